"""`paritrana export`: the latest published ranking of a category as CSV, Parquet or XLSX.

CSV and Parquet are the published bytes. The workbook is for evaluators opening Excel:
a frozen, filtered header row, number formats per column kind, and sheets that explain
the indicators, weights and targets and the run it came from (from the manifest).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .methodology import INDICATORS
from .publication import PRUNED, RANKINGS, latest
from .settings import Paths

FORMATS = ("csv", "parquet", "xlsx")
# The group of indicators, weights and targets each ranking uses (methodology.md §3-5).
GROUP = {"pemda_provinsi": "pemda", "pemda_kabkota": "pemda", "badan_usaha": "badan_usaha", "umk": "umk"}


class NothingPublished(FileNotFoundError):
    pass


def export(paths: Paths, category: str, year: int, fmt: str, out: Path, run_id: str | None = None) -> Path:
    """The latest publication's ranking, or that of the publication `run_id` of the year."""
    if category not in RANKINGS:
        raise ValueError(f"unknown category {category!r}; one of {', '.join(RANKINGS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    folder = _publication(paths, year, run_id) if run_id else latest(paths, year)
    if folder is None:
        link = paths.home / "published" / str(year) / "latest"
        if link.is_symlink():  # it names a publication that someone moved or deleted
            raise NothingPublished(f"{link} names {os.readlink(link)}, which is no longer there: restore it, or "
                                   f"run the year again to publish anew")
        raise NothingPublished(f"nothing published for {year} under {paths.home / 'published' / str(year)}")
    if str(out) == "-":  # as in most tools: the standard output, for a pipe
        _write(folder, category, fmt, sys.stdout.buffer)
        return Path("-")
    out = Path(out)
    if out.is_dir():  # as `cp` does: into the folder, under the published file's name
        out = out / f"rankings_{category}.{fmt}"
    if out.suffix.lower() in {f".{f}" for f in FORMATS} and out.suffix.lower() != f".{fmt}":
        raise ValueError(f"--out {out} names a {out.suffix} file, but --format is {fmt}: name it "
                         f"{out.with_suffix('.' + fmt).name}, or choose --format {out.suffix.lower()[1:]}")
    if out.exists() and not out.is_file():  # a device or a pipe (/dev/stdout): written into, never replaced
        with out.open("wb") as stream:
            _write(folder, category, fmt, stream)
        return out
    if out.is_symlink():  # the file the link names is replaced, not the link
        out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it: whoever opens `out` meanwhile reads the
    # previous file or the new one whole, and a failed export leaves no half file.
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("wb") as stream:
            _write(folder, category, fmt, stream)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _publication(paths: Paths, year: int, run_id: str) -> Path:
    """The folder of one publication, with its files (PARITRANA_KEEP_PUBLICATIONS may
    have removed them: its manifest then still records what they were)."""
    root = paths.home / "published" / str(year)
    folder = root / run_id
    if "/" in run_id or run_id.startswith(".") or not (folder / "manifest.json").is_file():
        known = sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file() and not p.is_symlink()) \
            if root.is_dir() else []
        raise NothingPublished(f"no publication {run_id!r} for {year} under {root}"
                               + (f", which holds {len(known)} (their names are their run ids)" if known else ""))
    if (folder / PRUNED).exists():
        raise NothingPublished(f"the files of publication {run_id} were removed ({folder / PRUNED} says when and "
                               f"why); its manifest.json keeps their row counts and sha256")
    return folder


def _write(folder: Path, category: str, fmt: str, stream) -> None:
    """The export's bytes into a binary stream, which need not be seekable (a pipe)."""
    if fmt in ("csv", "parquet"):
        with (folder / f"rankings_{category}.{fmt}").open("rb") as published:
            shutil.copyfileobj(published, stream, 1 << 20)
        return
    if stream.seekable():
        write_workbook(folder, category, stream)
        return
    with tempfile.TemporaryFile() as workbook:  # a zip is written with seeks, which a pipe has not
        write_workbook(folder, category, workbook)
        workbook.seek(0)
        shutil.copyfileobj(workbook, stream, 1 << 20)


def _number_format(column: str) -> str | None:
    if column.endswith("_score"):
        return "0.0000"
    if column.endswith("_value"):
        return "0.000000"
    if column.endswith("_idr"):
        return "#,##0"
    if column.startswith(("rank_", "participants", "employers_", "claims_", "death_", "scholarship_")) \
            or column in ("reported_workforce", "arrears_months", "year"):
        return "#,##0" if column != "year" else "0"
    return None


def _styled(ws, value=None, **style):
    """A cell for a write-only sheet, which takes styles only on cells made for it."""
    from openpyxl.cell import WriteOnlyCell
    cell = WriteOnlyCell(ws, value=value)
    for name, setting in style.items():
        setattr(cell, name, setting)
    return cell


_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # openpyxl's ILLEGAL_CHARACTERS_RE


def _text_cell(ws, text: str):
    cell = _styled(ws, text)
    cell.data_type = "s"
    return cell


def _typed(value: str, column: str):
    if value == "":
        return None
    if value in ("true", "false"):
        return value == "true"
    fmt = _number_format(column)
    if fmt is None:
        # A control character in a provider's text (a vertical tab pasted into a business
        # name) is no XML: openpyxl refused the whole workbook. It is shown as its symbol (␋).
        return _ILLEGAL.sub(lambda m: chr(0x2400 + ord(m.group())), value) if _ILLEGAL.search(value) else value
    return int(value) if fmt in ("#,##0", "0") else float(value)


# One sheet's rows in the file format Excel opens (header included).
XLSX_MAX_ROWS = 1_048_576


def write_workbook(folder: Path, category: str, out: Path) -> None:
    """Streamed (openpyxl's write-only mode): the national ranking of 678,000 micro
    enterprises is written row by row in 54 MB and 147 s; built in memory it took 5.6 GB
    and 185 s."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    manifest = json.loads((folder / "manifest.json").read_text())
    source = folder / f"rankings_{category}.csv"
    rows = {f["file"]: f["rows"] for f in manifest["files"]}[source.name]
    if rows + 1 > XLSX_MAX_ROWS:
        raise ValueError(f"rankings_{category} has {rows:,} rows, more than an Excel sheet holds "
                         f"({XLSX_MAX_ROWS - 1:,} below its header): export it as csv or parquet")
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(category[:31])
    with source.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        title = dict(font=Font(bold=True, color="FFFFFF"), fill=PatternFill("solid", fgColor="1F4E78"),
                     alignment=Alignment(wrap_text=True, vertical="top"))
        for i, column in enumerate(header, start=1):
            ws.column_dimensions[get_column_letter(i)].width = max(10, min(40, len(column) + 2))
        ws.freeze_panes = "F2"
        ws.append([_styled(ws, column, **title) for column in header])
        # A formatted cell per formatted column, reused: each row is written out as it is
        # appended, so one cell object per column carries its format for every row.
        formats = [_number_format(c) for c in header]
        cells = [_styled(ws, number_format=fmt) if fmt else None for fmt in formats]
        for row in reader:
            values = []
            for v, c, cell in zip(row, header, cells):
                value = _typed(v, c)
                if cell is None:
                    # Text from a provider ("=HYPERLINK(...)" as a business name) stays text:
                    # openpyxl writes a string that starts with "=" as a formula.
                    values.append(_text_cell(ws, value) if isinstance(value, str) and value[:1] == "=" else value)
                else:
                    cell.value = value
                    values.append(cell)
            ws.append(values)
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{rows + 1}"

    config = manifest["configuration"]["values"]
    group = GROUP[category]
    described = {i.name: f"{i.reads} ({i.code})" + (f"; {i.rule}" if i.rule else "") for i in INDICATORS[group]}
    info = wb.create_sheet("Indicators")
    info.column_dimensions["A"].width, info.column_dimensions["B"].width = 26, 90  # before any row
    info.append([_styled(info, t, font=Font(bold=True))
                 for t in ("indicator", "definition", "weight", "target", "score")])
    for name, weight in config["weights"][group].items():
        info.append([name, described.get(name, ""), weight, config["targets"][group][name],
                     "100 × min(value ÷ target, 1)"])
    info.append([])
    info.append(["total_score", "Σ weight × score ÷ Σ weight; empty for ineligible entities"])
    info.append(["ranks", "round(total, 6) desc, first indicator score desc, entity code asc"])
    if group == "badan_usaha":
        info.append(["mandatory programmes", json.dumps(config["mandatory_programmes"])])
        info.append(["arrears threshold (months)", config["arrears_threshold"]])

    about = wb.create_sheet("Run")
    about.column_dimensions["A"].width, about.column_dimensions["B"].width = 24, 80
    for k in ("run_id", "year", "as_of", "created_at", "code_version"):
        about.append([k, manifest[k]])
    about.append(["configuration sha256", manifest["configuration"]["sha256"]])
    about.append(["source file", f"rankings_{category}.csv in {folder}"])
    wb.save(out)
