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
from .publication import RANKINGS, NothingPublished, find_publication, latest
from .settings import Paths

FORMATS = ("csv", "parquet", "xlsx")
# The group of indicators, weights and targets each ranking uses (methodology.md §3-5).
GROUP = {"pemda_provinsi": "pemda", "pemda_kabkota": "pemda", "badan_usaha": "badan_usaha", "umk": "umk"}


def export(paths: Paths, category: str, year: int, fmt: str, out: Path, run_id: str | None = None) -> Path:
    """The latest publication's ranking, or that of the publication `run_id` of the year."""
    if category not in RANKINGS:
        raise ValueError(f"unknown category {category!r}; one of {', '.join(RANKINGS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    folder = find_publication(paths, run_id, year) if run_id else latest(paths, year)
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


# Characters XML 1.0 cannot hold (openpyxl's ILLEGAL_CHARACTERS_RE): a vertical tab pasted
# into a business name made the whole workbook fail. Each is shown as its symbol (␋).
_ILLEGAL = [c for c in range(32) if c not in (9, 10, 13)]

# One sheet's rows in the file format Excel opens (header included).
XLSX_MAX_ROWS = 1_048_576
# A placeholder row that makes openpyxl register each number format's style: its cells'
# style ids are read back from the XML, and the row is replaced by the ranking's rows.
_TEMPLATE_ROW = 2


def write_workbook(folder: Path, category: str, out) -> None:
    """The workbook's small parts (styles, header, frozen panes, filter, the Indicators and
    Run sheets) come from openpyxl; the ranking's rows are written as sheet XML by DuckDB,
    set-based, and streamed into the zip: the national ranking of 678,000 micro enterprises
    takes 10 s; row by row through openpyxl it took 147 s (and 5.6 GB built in memory)."""
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
        header = next(csv.reader(f))
    title = dict(font=Font(bold=True, color="FFFFFF"), fill=PatternFill("solid", fgColor="1F4E78"),
                 alignment=Alignment(wrap_text=True, vertical="top"))
    for i, column in enumerate(header, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, min(40, len(column) + 2))
    ws.freeze_panes = "F2"
    ws.append([_styled(ws, column, **title) for column in header])
    formats = [_number_format(c) for c in header]
    ws.append([_styled(ws, 0, number_format=fmt) if fmt else None for fmt in formats])  # the template row
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
    with tempfile.TemporaryFile() as small:
        wb.save(small)
        small.seek(0)
        _with_rows(small, out, source, header, formats)


def _with_rows(small, out, source: Path, header: list[str], formats: list[str | None]) -> None:
    """Copy the workbook `small` into `out`, its first sheet's template row replaced by
    every row of the CSV `source`."""
    import zipfile

    from openpyxl.utils import get_column_letter

    sheet = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(small) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename != sheet:
                zout.writestr(item, zin.read(item.filename))
                continue
            xml = zin.read(sheet).decode()
            template = re.search(rf'<row r="{_TEMPLATE_ROW}"[^>]*>.*?</row>', xml)
            styles = dict(re.findall(rf'<c r="([A-Z]+){_TEMPLATE_ROW}" s="(\d+)"', template.group()))
            letters = [get_column_letter(i) for i in range(1, len(header) + 1)]
            cells = [_cell_sql(f"c{i}", letter, styles.get(letter) if fmt else None)
                     for i, (letter, fmt) in enumerate(zip(letters, formats))]
            with zout.open(item.filename, "w") as sheet_xml:
                sheet_xml.write(xml[:template.start()].encode())
                _stream_rows(sheet_xml, source, len(header), cells)
                sheet_xml.write(xml[template.end():].encode())


def _cell_sql(column: str, letter: str, style: str | None) -> str:
    """One cell's XML from the CSV field `column` (text), as openpyxl would write it: a
    number in a column with a number format, true/false as a boolean, other text as an
    inline string (never a formula, whatever it starts with); nothing for an empty field."""
    ref = f"""'<c r="{letter}' || n || '"'"""
    shown = f"translate({column}, {' || '.join(f'chr({c})' for c in _ILLEGAL)}, " \
            f"{' || '.join(f'chr({0x2400 + c})' for c in _ILLEGAL)})"
    text = f"replace(replace(replace({shown}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
    as_text = f"""{ref} || ' t="inlineStr"><is><t xml:space="preserve">' || {text} || '</t></is></c>'"""
    as_bool = f"""{ref} || ' t="b"><v>' || case when {column} = 'true' then '1' else '0' end || '</v></c>'"""
    kind = f"when {column} in ('true', 'false') then {as_bool}"
    if style is not None:
        kind = (f"""when try_cast({column} as double) is not null then {ref} || ' s="{style}" t="n"><v>' """
                f"|| {column} || '</v></c>'")
    return f"case when {column} is null or {column} = '' then null {kind} else {as_text} end"


def _stream_rows(stream, source: Path, width: int, cells: list[str]) -> None:
    import duckdb

    from ingestion.rules import sql_str

    con = duckdb.connect()
    try:
        # One thread: the CSV is read in its order, so row_number() numbers its records as they stand.
        con.execute("set threads = 1")
        con.execute("set enable_progress_bar = false")  # `--out -` streams the workbook to stdout
        names = ", ".join(f"'c{i}'" for i in range(width))
        fields = (f"read_csv({sql_str(str(source))}, header = true, all_varchar = true, delim = ',', quote = '\"', "
                  f"escape = '\"', names = [{names}])")
        query = (f"select '<row r=\"' || n || '\">' || concat({', '.join(cells)}) || '</row>' "
                 f"from (select row_number() over () + {_TEMPLATE_ROW - 1} as n, * from {fields}) as fields")
        reader = con.sql(query).to_arrow_reader(10_000)
        for batch in reader:
            stream.write("".join(batch.column(0).to_pylist()).encode())
    finally:
        con.close()
