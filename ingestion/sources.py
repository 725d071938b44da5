"""A delivered data file as a relation that DuckDB reads: its header, the SQL for each
column's delivered text, what its line breaks say about its records, and the reader's
errors made into file-level rejections that never quote a row (extracts.md §1, §4).
"""
from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from paritrana.warehouse import damaged, interrupted, machine_failure

from .contracts import Extract
from .deliveries import Delivery, FileRejected
from .rules import file_sql, quote_ident, sql_str

_SAFE_ERROR = re.compile(
    r"^(Invalid unicode.*|Expected Number of Columns.*|Value with unterminated quote.*"
    r"|.*[Mm]aximum line size.*|No files found.*|.*[Pp]arquet.*magic.*|No magic bytes.*|.*(GZIP|gzip) stream.*"
    r"|File '.*' too small to be a Parquet file)$"
)
_ERROR_CLASS = re.compile(r"^[A-Z][A-Za-z ]* Error: ")  # DuckDB's "Invalid Input Error: " and the like
_READER_LINE = re.compile(r"CSV Error on Line: (\d+)")


def safe_error(e: Exception) -> str:
    """DuckDB's reader errors quote the offending line, which may hold a NIK or a name:
    keep only the lines that describe the problem."""
    lines = [_ERROR_CLASS.sub("", ln.strip()) for ln in str(e).splitlines()]
    kept = [ln for ln in lines if _SAFE_ERROR.match(ln)]
    return "; ".join(kept) or f"{type(e).__name__} (details withheld: they may quote personal data)"


def reader_line(e: Exception) -> int | None:
    """The line DuckDB's CSV reader stopped on. It counts the file's lines but not the line
    breaks inside quoted fields, so it is the physical line only when no field above holds one."""
    found = _READER_LINE.search(str(e))
    return int(found.group(1)) if found else None


def near_misses(missing: list[str], header: list[str]) -> str:
    """Header names that are a missing column but for case or spaces ("NPP", "npp "): the
    contract's names are exact and case-sensitive, and such a header looks right at a glance."""
    near = [f"{h!r} for {c}" for c in missing for h in header if h.strip().lower() == c]
    return f" (the header has {', '.join(near)}: names are exact and case-sensitive)" if near else ""


def separator_hint(header: list[str]) -> str:
    """A header read as one column that another separator splits: likely a spreadsheet's
    export in a locale whose list separator is not the comma (Indonesian Excel uses ';')."""
    if len(header) == 1:
        for name, sep in (("semicolons", ";"), ("tabs", "\t"), ("bars", "|")):
            if sep in header[0]:
                return f" (the header is one column separated by {name}; extracts.md §1 asks for commas)"
    return ""


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte UTF-8 does not decode


def _csv_header(path: Path, gz: bool) -> list[str]:
    # Bytes that are not UTF-8 are judged here only in the header: the text layer decodes
    # a block ahead, and a bad byte further down is the scan's to find, with its line.
    try:
        raw = gzip.open(path, "rb") if gz else path.open("rb")
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
            header = next(csv.reader(text), None)
    except (OSError, EOFError, csv.Error) as e:
        raise FileRejected("UNREADABLE", f"header is not readable as UTF-8 CSV ({type(e).__name__})") from None
    if not header:
        raise FileRejected("UNREADABLE", "file is empty: no header row")
    if any(_NOT_UTF8.search(h) for h in header):
        raise FileRejected("UNREADABLE", "header is not UTF-8 text")
    return header


@dataclass
class Source:
    """A data file as a relation of text columns, and what its header says."""
    relation: str
    header: list[str]
    extra: list[str]
    text: Callable[[str], str]  # SQL for a column's delivered text (NULL when empty)
    record: str | None  # SQL for the 1-based record number, when the reader knows it
    # every record is one line (line = record number + 1); for CSV presumed until the
    # file's line count confirms it
    single_line: bool
    sequential: bool  # the reader uses one thread (a compressed file)
    typed: set[str] = field(default_factory=set)  # columns read in their contract type (Parquet)
    stage: str = ""  # the table the scan writes
    mistyped: list[str] = field(default_factory=list)  # Parquet columns not of the contract's type

    @property
    def record_as_read(self) -> str:
        """SQL for the 1-based record number in a re-read of the file: the reader's, or
        records numbered as read (on one thread, in file order: `read` checks the plan,
        see NUMBERING_OPERATOR), for the rare passes that must pair re-read records with
        the stage's."""
        return self.record or "row_number() over ()"

    def text_of(self, c: str, sql: str) -> str:
        """SQL for the delivered text of column `c` held in `sql` (typed or text)."""
        return f"cast({sql} as varchar)" if c in self.typed else sql


# Parquet types whose values a contract type takes as they are: no text round trip. The
# checks that text would have had to pass are kept as bounds (rules.validation_sql).
_AS_DELIVERED = {
    "int": ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"),
    "date": ("DATE",),
    # Through text a double reads in scientific notation beyond 1e15 or below 1e-4 ("5e-05"),
    # which no CSV number takes: a valid score was BAD_TYPE. A float's text is its shortest
    # decimal (0.1), its double value not (0.100000001...): floats keep the text path.
    "number": ("DOUBLE",),
}


def open_source(con, d: Delivery, extract: Extract) -> Source:
    path = file_sql(d.path)
    if d.ext == "parquet":
        try:
            schema = con.execute(f"describe select * from read_parquet({path})").fetchall()
        except Exception as e:  # noqa: BLE001 - any reader failure is a file-level rejection
            raise unreadable(d, e) from None
        header = [name for name, *_ in schema]
        types = {name: t for name, t, *_ in schema}
        typed = {c for c in header if c in extract.column_names and not extract.column(c).personal
                 and types[c] in _AS_DELIVERED.get(extract.column(c).type, ())}

        def text(c):
            # As a CSV field would read: a flag as 1/0, and an empty string, like a NULL,
            # as no value (a CSV's empty field is NULL), so both formats give the same
            # codes for the same content; a NULL stays NULL (MISSING_VALUE where required).
            q = quote_ident(c)
            if types[c] == "BOOLEAN":
                return f"case when {q} then '1' when not {q} then '0' end"
            return f"nullif(cast({q} as varchar), '')"
        relation = f"read_parquet({path}, file_row_number = true)"
        record = "file_row_number + 1"
        mistyped = [f"{c} {types[c]}, {extract.column(c).type} expected" for c in header
                    if c in extract.column_names and not _type_fits(extract.column(c).type, types[c])]
    else:
        # A column without a name (a spreadsheet's trailing comma) is one the contract does
        # not know: ignored and reported like any other (extracts.md §1), under its place.
        header = [h or f"(unnamed column {i})" for i, h in enumerate(_csv_header(d.path, d.ext == "csv.gz"), 1)]
        columns = "{" + ", ".join(f"{sql_str(c)}: 'VARCHAR'" for c in header) + "}"
        # The compression is stated, not inferred from the name: DuckDB's inference reads a
        # '?' in the path as the start of a URL's query and misses the '.gz'.
        compression = "gzip" if d.ext == "csv.gz" else "none"
        relation = (f"read_csv({path}, compression = '{compression}', header = true, auto_detect = false, "
                    f"delim = ',', quote = '\"', "
                    f"escape = '\"', strict_mode = true, null_padding = false, encoding = 'utf-8', "
                    f"max_line_size = 16777216, nullstr = '', allow_quoted_nulls = true, columns = {columns})")
        record = None
        typed = set()
        mistyped = []

        def text(c):
            # The reader already gives NULL for an empty field, quoted ("") or not.
            return quote_ident(c)
    if len(set(header)) != len(header) or any(not h for h in header):
        repeated = sorted({h for h in header if header.count(h) > 1})
        raise FileRejected("UNREADABLE", "header has empty or repeated column names"
                           + (f" ({', '.join(repeated)} more than once)" if repeated else ""))
    return Source(relation, header, [c for c in header if c not in extract.column_names], text, record,
                  # presumed until the digest's line count confirms it, after the scan (loader._load_one)
                  single_line=d.ext != "parquet", sequential=d.ext == "csv.gz", typed=typed, mistyped=mistyped)


_INTEGERS = _AS_DELIVERED["int"] + ("HUGEINT", "UBIGINT", "UHUGEINT")


def _type_fits(contract_type: str, parquet_type: str) -> bool:
    """Whether a Parquet column's type can carry the contract's values as the contract
    writes them. Others are still judged by their text (a timestamp's text is no date, a
    double's no integer: `BAD_TYPE`); the file's result names them once, so that a whole
    file of `BAD_TYPE` rows is explained (pandas writes dates as timestamps, and an
    integer column with a gap as doubles)."""
    if parquet_type == "VARCHAR" or contract_type == "text":
        return True
    return {"date": parquet_type == "DATE", "int": parquet_type in _INTEGERS,
            "flag": parquet_type == "BOOLEAN" or parquet_type in _INTEGERS,
            "number": parquet_type in _INTEGERS or parquet_type in ("DOUBLE", "FLOAT")
            or parquet_type.startswith("DECIMAL")}.get(contract_type, True)


def single_line_records(d: Delivery) -> bool:
    """Whether the file's line breaks are exactly the header's, one per record and those of
    the empty lines at its very end, so no quoted field holds one and no empty line lies
    between records. Each record ends with a line break (but perhaps the last), so the
    count can only match when none does; if the control's row count is wrong the file is
    rejected after the scan anyway."""
    if d.ext == "parquet" or d.digest is None or d.digest.newlines is None:
        return False
    expected = d.control.row_count + (1 if d.digest.ends_with_newline else 0) + d.digest.trailing_blank_lines
    return d.digest.newlines == expected


def require_readable(con, d: Delivery, source: Source) -> None:
    try:
        # Every column is counted so that every field is decoded (a bare count(*) reads none).
        con.execute(f"select count(columns(*)) from {source.relation}").fetchall()
    except Exception as e:  # noqa: BLE001
        raise unreadable(d, e) from None


def unreadable(d: Delivery, e: Exception) -> FileRejected:
    """The rejection for a reader error. A user's interrupt, and the machine's failure (the
    disk full, memory exhausted), are raised as such instead: they are no fault of the
    file, which the next run loads (nothing of it was recorded); so is a damaged warehouse."""
    if interrupted(e):
        raise KeyboardInterrupt(f"interrupted while reading {d.name}") from e
    if machine_failure(e) or damaged(e, reading=d.path):  # the machine's or the warehouse's, not the file's
        raise e
    what = "Parquet" if d.ext == "parquet" else "UTF-8 CSV (RFC 4180)"
    line = reader_line(e)
    where = f" on line {line:,}" if line else ""
    return FileRejected("UNREADABLE", f"not readable as {what}{where}: {safe_error(e)}", line)
