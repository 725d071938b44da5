"""`paritrana export`: the latest published ranking of a category as CSV, Parquet or XLSX,
or its indicator table (`--table indicators`).

A ranking's CSV and Parquet are the published bytes. The indicator table is the
publication's basis/ mart for the category, every column unrounded (each indicator's
numerator and denominator too), in the ranking's own rows and row order. The workbook is
for evaluators opening Excel: a frozen, filtered header row, number formats per column
kind, and sheets that explain the indicators, weights and targets and the run it came
from (from the manifest).
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
from .publication import BASIS, BASIS_MARTS, RANKINGS, NothingPublished, find_publication, latest, read_manifest
from .settings import Paths

FORMATS = ("csv", "parquet", "xlsx")
# The group of indicators, weights and targets each ranking uses (methodology.md §3-5).
GROUP = {"pemda_provinsi": "pemda", "pemda_kabkota": "pemda", "badan_usaha": "badan_usaha", "umk": "umk"}
TABLES = ("rankings", "indicators")


def export(paths: Paths, category: str, year: int, fmt: str, out: str | Path, run_id: str | None = None,
           table: str = "rankings") -> Path:
    """The latest publication's ranking (or indicator table), or that of the publication
    `run_id` of the year."""
    return export_from(paths, category, year, fmt, out, run_id, table)[0]


def provenance(folder: Path, category: str, table: str = "rankings") -> str:
    """What an export holds and where from, for its user's record: the latest publication
    changes every night, so the folder it was read from is named, with its date and rows."""
    manifest = read_manifest(folder)
    rows = {f["file"]: f["rows"] for f in manifest["files"]}.get(f"rankings_{category}.csv")
    return (f"{table}_{category}" + (f", {rows:,} rows" if rows is not None else "")
            + f", of publication {manifest['run_id']} (year {manifest['year']}, as of {manifest['as_of']})")


def export_from(paths: Paths, category: str, year: int, fmt: str, out: str | Path, run_id: str | None = None,
                table: str = "rankings") -> tuple[Path, Path]:
    """As `export`, and the publication folder it read."""
    from .warehouse import writing_to

    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")
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
    if table == "indicators" and not (folder / BASIS).is_dir():
        raise NothingPublished(f"publication {folder.name} keeps no basis/ folder (it was published before 0.3.9), "
                               "so no indicator table: export its rankings, or query marts.*_indicators in the "
                               "analysts' copy while it holds that build")
    if str(out) == "-":  # as in most tools: the standard output, for a pipe
        with writing_to("the standard output"):
            _write(folder, category, fmt, sys.stdout.buffer, table)
        return Path("-"), folder
    # `out/` names a folder, made if need be (a file named `out` was written before 0.3.10)
    folder_named = str(out).endswith(("/", os.sep))
    out = Path(out)
    if out.is_dir() or folder_named:  # as `cp` does: into the folder, under the published file's name
        out = out / f"{table}_{category}.{fmt}"
    if out.suffix.lower() in {f".{f}" for f in FORMATS} and out.suffix.lower() != f".{fmt}":
        raise ValueError(f"--out {out} names a {out.suffix} file, but --format is {fmt}: name it "
                         f"{out.with_suffix('.' + fmt).name}, or choose --format {out.suffix.lower()[1:]}")
    if out.exists() and not out.is_file():  # a device or a pipe (/dev/stdout): written into, never replaced
        with writing_to(str(out)), out.open("wb") as stream:
            _write(folder, category, fmt, stream, table)
        return out, folder
    if out.is_symlink():  # the file the link names is replaced, not the link
        out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it: whoever opens `out` meanwhile reads the
    # previous file or the new one whole, and a failed export leaves no half file.
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with writing_to(str(tmp)), tmp.open("wb") as stream:
            _write(folder, category, fmt, stream, table)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, folder


def _write(folder: Path, category: str, fmt: str, stream, table: str = "rankings") -> None:
    """The export's bytes into a binary stream, which need not be seekable (a pipe)."""
    if table == "indicators":
        with tempfile.TemporaryDirectory() as work:
            source = indicator_table(folder, category, Path(work) / f"indicators_{category}.{fmt}")
            if fmt == "xlsx":
                _workbook_into(stream, folder, category, source, table)
            else:
                with source.open("rb") as written:
                    shutil.copyfileobj(written, stream, 1 << 20)
        return
    if fmt in ("csv", "parquet"):
        with (folder / f"rankings_{category}.{fmt}").open("rb") as published:
            shutil.copyfileobj(published, stream, 1 << 20)
        return
    _workbook_into(stream, folder, category, folder / f"rankings_{category}.csv", table)


def _workbook_into(stream, folder: Path, category: str, source: Path, table: str) -> None:
    if stream.seekable():
        write_workbook(folder, category, stream, source, table)
        return
    with tempfile.TemporaryFile() as workbook:  # a zip is written with seeks, which a pipe has not
        write_workbook(folder, category, workbook, source, table)
        workbook.seek(0)
        shutil.copyfileobj(workbook, stream, 1 << 20)


def _basis_mart(category: str) -> str:
    """The basis mart (publication.BASIS_MARTS) a ranking comes from: its group's."""
    mart = f"{GROUP[category]}_indicators"
    assert mart in BASIS_MARTS, mart
    return mart


def indicator_table(folder: Path, category: str, out: Path) -> Path:
    """The category's rows of the publication's basis mart, every column, written to `out`
    (.csv with a header, or .parquet; a workbook is made from the .csv). Its rows and their
    order are the published ranking's, by joining on its Parquet file's row numbers, so
    that the two tables line up row for row without a second copy of the ranking's order."""
    import duckdb

    from ingestion.rules import sql_str

    fmt = "parquet" if out.suffix == ".parquet" else "csv"
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")  # `--out -` may stream it to stdout
        basis = sql_str(str(folder / BASIS / f"{_basis_mart(category)}.parquet"))
        ranking = sql_str(str(folder / f"rankings_{category}.parquet"))
        con.execute(f"""copy (
            select b.* from read_parquet({basis}) as b
            join read_parquet({ranking}, file_row_number = true) as r on r.entity_code = b.entity_code
            order by r.file_row_number
        ) to {sql_str(str(out.with_suffix('.' + fmt)))} (format {fmt}{', header true' if fmt == 'csv' else ''})""")
    finally:
        con.close()
    return out.with_suffix("." + fmt)


def _number_format(column: str, kind: str = "") -> str | None:
    """By the column's name, else by its type (`kind`, DuckDB's): the indicator table's
    counts and shares would otherwise reach Excel as text."""
    if column.endswith("_score"):
        return "0.0000"
    if column.endswith("_value"):
        return "0.000000"
    if column.endswith("_idr"):
        return "#,##0"
    if column.startswith(("rank_", "participants", "employers_", "claims_", "death_", "scholarship_")) \
            or column in ("reported_workforce", "arrears_months", "year"):
        return "#,##0" if column != "year" else "0"
    if kind in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"):
        return "#,##0"
    if kind in ("FLOAT", "DOUBLE") or kind.startswith("DECIMAL"):
        return "0.000000"
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


def write_workbook(folder: Path, category: str, out, source: Path | None = None, table: str = "rankings") -> None:
    """The workbook's small parts (styles, header, frozen panes, filter, the Indicators and
    Run sheets) come from openpyxl; the ranking's rows are written as sheet XML by DuckDB,
    set-based, and streamed into the zip: the national ranking of 678,000 micro enterprises
    takes 10 s; row by row through openpyxl it took 147 s (and 5.6 GB built in memory)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    manifest = read_manifest(folder)
    source = source or folder / f"rankings_{category}.csv"
    rows = {f["file"]: f["rows"] for f in manifest["files"]}[f"rankings_{category}.csv"]  # the table's too
    if rows + 1 > XLSX_MAX_ROWS:
        raise ValueError(f"{table}_{category} has {rows:,} rows, more than an Excel sheet holds "
                         f"({XLSX_MAX_ROWS - 1:,} below its header): export it as csv or parquet")
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(category[:31])
    with source.open(newline="") as f:
        header = next(csv.reader(f))
    title = dict(font=Font(bold=True, color="FFFFFF"), fill=PatternFill("solid", fgColor="1F4E78"),
                 alignment=Alignment(wrap_text=True, vertical="top"))
    for i, column in enumerate(header, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, min(40, len(column) + 2))
    ws.freeze_panes = "F2" if table == "rankings" else "C2"  # the entity's code and name stay in sight
    ws.append([_styled(ws, column, **title) for column in header])
    kinds = _column_types(folder / (f"rankings_{category}.parquet" if table == "rankings"
                                    else f"{BASIS}/{_basis_mart(category)}.parquet"))
    formats = [_number_format(c, kinds.get(c, "")) for c in header]
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
    about.append(["source file", f"rankings_{category}.csv in {folder}" if table == "rankings" else
                  f"basis/{_basis_mart(category)}.parquet in {folder}, the rows of rankings_{category}.csv"])
    with tempfile.TemporaryFile() as small:
        wb.save(small)
        small.seek(0)
        _with_rows(small, out, source, header, formats)


def _column_types(parquet: Path) -> dict[str, str]:
    import duckdb

    from ingestion.rules import sql_str

    con = duckdb.connect()
    try:
        return dict(con.execute(f"select column_name, column_type from (describe select * from "
                                f"read_parquet({sql_str(str(parquet))}))").fetchall())
    finally:
        con.close()


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
