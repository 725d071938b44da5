"""Load the ready deliveries of a landing folder into the raw layer.

Per file: file-level checks in the contract's order (extracts.md §1), then one staging
scan inside DuckDB (personal data tokenised on the way in), one set-based validation,
and one transaction that loads the valid rows, quarantines the rest, supersedes the
previous file of the same extract and business date, and writes the ledger row. A
process killed mid-file leaves the warehouse as before that file; the next run redoes it.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

from .contracts import EXTRACTS, NIK, PROVINCE_CODES, Extract
from .deliveries import (
    Delivery, FileRejected, LandingScan, control_sha256, file_sha256, parse_name,
    read_control, scan_landing, extract_group,
)
from .personal_data import MASK, hmac_pads, token_sql
from .raw_schema import RAW, ensure_raw_schema, loaded_columns
from .rules import quote_ident, sql_str, validation_sql

STAGE, ROWS, CHECKED = "_ingest_stage", "_ingest_rows", "_ingest_checked"


@dataclass
class FileResult:
    file_name: str
    status: str  # LOADED | REJECTED | SKIPPED_REDELIVERY | SKIPPED_STALE
    extract: str | None = None
    business_date: dt.date | None = None
    reason_code: str | None = None
    reason_detail: str | None = None
    rows_in_file: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    extra_columns: list[str] = field(default_factory=list)
    superseded: str | None = None
    seconds: float = 0.0


@dataclass
class IngestReport:
    results: list[FileResult]
    already_processed: list[str]
    not_ready: list[str]
    orphan_controls: list[str]
    ignored: list[str]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def rows(self) -> dict[str, int]:
        return {
            k: sum(getattr(r, f"rows_{k}") for r in self.results)
            for k in ("in_file", "loaded", "quarantined", "duplicate")
        }


Progress = Callable[[str], None]


def ingest(con, landing: Path, key: bytes, run_id: str, progress: Progress = lambda _: None,
           extracts: Collection[str] | None = None) -> IngestReport:
    """Load every ready delivery of the landing folder, or only those of `extracts`
    (extract names, or deliveries.UNRECOGNISED)."""
    ensure_raw_schema(con)
    scan: LandingScan = scan_landing(landing)
    ipad, opad = hmac_pads(key)
    pending, done = [], []
    for d in scan.ready:
        if extracts is not None and extract_group(d.name) not in extracts:
            continue
        if _already_processed(con, d):
            done.append(d.name)
        else:
            pending.append(d)
    # Names and controls first, so files of one extract and date load in produced_at order.
    early: dict[str, FileRejected] = {}
    for d in pending:
        try:
            parse_name(d)
            read_control(d)
        except FileRejected as r:
            early[d.name] = r
    pending.sort(key=lambda d: d.sort_key)
    results = []
    for i, d in enumerate(pending, 1):
        progress(f"[{i}/{len(pending)}] {d.name}")
        started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        t0 = time.perf_counter()
        try:
            if d.name in early:
                raise early[d.name]
            result = _load_one(con, d, run_id, started, ipad, opad)
        except FileRejected as r:
            result = FileResult(d.name, "REJECTED", d.extract, d.business_date, r.code, r.detail)
            _record(con, d, run_id, started, result)
        finally:
            _drop_temp(con)
        result.seconds = time.perf_counter() - t0
        results.append(result)
        progress("    " + describe(result))
    return IngestReport(results, done, scan.not_ready, scan.orphan_controls, scan.ignored)


def describe(r: FileResult) -> str:
    if r.status == "LOADED":
        s = (f"loaded {r.rows_loaded:,} of {r.rows_in_file:,} rows, quarantined {r.rows_quarantined:,}, "
             f"duplicates {r.rows_duplicate:,}")
        if r.superseded:
            s += f"; correction of {r.superseded}"
        if r.extra_columns:
            s += f"; ignored unknown columns {', '.join(r.extra_columns)}"
        return s + f" ({r.seconds:.1f} s)"
    return f"{r.status} {r.reason_code}: {r.reason_detail}"


def _already_processed(con, d: Delivery) -> bool:
    st = d.path.stat()
    row = con.execute(
        f"select 1 from {RAW}.load_ledger where file_name = ? and file_size = ? and file_mtime_ns = ? "
        "and control_sha256 = ? limit 1",
        [d.name, st.st_size, st.st_mtime_ns, control_sha256(d)],
    ).fetchone()
    return row is not None


def _current_load(con, extract: str, business_date: dt.date):
    return con.execute(
        f"select load_id, file_name, data_sha256, produced_at from {RAW}.load_ledger "
        "where extract = ? and business_date = ? and status = 'LOADED'",
        [extract, business_date],
    ).fetchone()


def _load_one(con, d: Delivery, run_id: str, started, ipad: bytes, opad: bytes) -> FileResult:
    extract = EXTRACTS[d.extract]
    d.data_sha256 = file_sha256(d.path)
    if d.data_sha256 != d.control.sha256:
        raise FileRejected("CONTROL_MISMATCH", "sha256 of the data file differs from the control file")
    current = _current_load(con, d.extract, d.business_date)
    if current and current[2] == d.data_sha256:
        result = FileResult(d.name, "SKIPPED_REDELIVERY", d.extract, d.business_date, "REDELIVERY",
                            f"same bytes as loaded file {current[1]}: nothing to do")
        _record(con, d, run_id, started, result)
        return result
    if current and current[3] > d.control.produced_at:
        result = FileResult(d.name, "SKIPPED_STALE", d.extract, d.business_date, "STALE_VERSION",
                            f"produced before the loaded file {current[1]}, which stays")
        _record(con, d, run_id, started, result)
        return result

    header, extra = _stage(con, d, extract, ipad, opad)
    missing = [c for c in extract.header_required if c not in header]
    if missing:
        raise FileRejected("MISSING_COLUMN", f"required column(s) absent from the header: {', '.join(missing)}")
    n_rows = con.execute(f"select count(*) from {STAGE}").fetchone()[0]
    if n_rows != d.control.row_count:
        raise FileRejected("CONTROL_MISMATCH", f"file has {n_rows:,} data rows, control file says {d.control.row_count:,}")

    _number_and_dedup(con, d, header)
    _validate(con, d, extract, set(header))
    loaded, quarantined = con.execute(
        f"select count(*) filter (where len(_details) = 0), count(*) filter (where len(_details) > 0) from {CHECKED}"
    ).fetchone()
    result = FileResult(d.name, "LOADED", d.extract, d.business_date, rows_in_file=n_rows,
                        rows_loaded=loaded, rows_quarantined=quarantined,
                        rows_duplicate=n_rows - loaded - quarantined, extra_columns=extra)
    con.execute("begin transaction")
    try:
        load_id = _record(con, d, run_id, started, result, commit=False)
        if current:
            con.execute(f"delete from {RAW}.{extract.name} where _load_id = ?", [current[0]])
            con.execute(f"update {RAW}.load_ledger set status = 'SUPERSEDED', superseded_by = ? where load_id = ?",
                        [load_id, current[0]])
            result.superseded = current[1]
        _insert_rows(con, extract, load_id, d)
        if quarantined:
            _insert_quarantine(con, extract, load_id, d, header)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return result


def _record(con, d: Delivery, run_id: str, started, r: FileResult, commit: bool = True) -> int:
    load_id = con.execute(f"select coalesce(max(load_id), 0) + 1 from {RAW}.load_ledger").fetchone()[0]
    st = d.path.stat()
    c = d.control
    con.execute(
        f"insert into {RAW}.load_ledger values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null, ?, ?)",
        [load_id, run_id, d.name, d.extract, d.business_date, d.ext, st.st_size, st.st_mtime_ns,
         d.data_sha256, control_sha256(d), c.produced_at if c else None, c.row_count if c else None,
         r.status, r.reason_code, r.reason_detail, r.rows_in_file, r.rows_loaded, r.rows_quarantined,
         r.rows_duplicate, r.extra_columns, started, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)],
    )
    return load_id


# --- staging -------------------------------------------------------------------------

_SAFE_ERROR = re.compile(
    r"^(CSV Error on Line: \d+|Invalid unicode.*|Expected Number of Columns.*|Value with unterminated quote.*"
    r"|.*[Mm]aximum line size.*|No files found.*|.*[Pp]arquet.*magic.*|Invalid Input Error: No magic bytes.*)$"
)


def safe_error(e: Exception) -> str:
    """DuckDB's reader errors quote the offending line, which may hold a NIK or a name:
    keep only the lines that describe the problem."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    kept = [ln for ln in lines if _SAFE_ERROR.match(ln)]
    return "; ".join(kept) or f"{type(e).__name__} (details withheld: they may quote personal data)"


def _csv_header(path: Path, gz: bool) -> list[str]:
    try:
        raw = gzip.open(path, "rb") if gz else path.open("rb")
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            header = next(csv.reader(text), None)
    except (UnicodeDecodeError, OSError, EOFError, csv.Error) as e:
        raise FileRejected("UNREADABLE", f"header is not readable as UTF-8 CSV ({type(e).__name__})") from None
    if not header:
        raise FileRejected("UNREADABLE", "file is empty: no header row")
    return header


def _stage(con, d: Delivery, extract: Extract, ipad: bytes, opad: bytes) -> tuple[list[str], list[str]]:
    """Read the whole file into a temporary table of text columns, tokenising personal data.

    Returns the header and the unknown (ignored) columns."""
    path = sql_str(str(d.path))
    if d.ext == "parquet":
        try:
            schema = con.execute(f"describe select * from read_parquet({path})").fetchall()
        except Exception as e:  # noqa: BLE001 - any reader failure is a file-level rejection
            raise FileRejected("UNREADABLE", f"not a readable Parquet file: {safe_error(e)}") from None
        header = [name for name, *_ in schema]
        types = {name: t for name, t, *_ in schema}
        source = f"(select * from read_parquet({path}, file_row_number = true))"
        record_number = "file_row_number + 1"

        def text(c):
            q = quote_ident(c)
            return f"case when {q} then '1' else '0' end" if types[c] == "BOOLEAN" else f"cast({q} as varchar)"
    else:
        header = _csv_header(d.path, d.ext == "csv.gz")
        columns = "{" + ", ".join(f"{sql_str(c)}: 'VARCHAR'" for c in header) + "}"
        source = (f"read_csv({path}, header = true, auto_detect = false, delim = ',', quote = '\"', "
                  f"escape = '\"', strict_mode = true, null_padding = false, encoding = 'utf-8', "
                  f"max_line_size = 16777216, columns = {columns})")
        record_number = None

        def text(c):
            return f"nullif({quote_ident(c)}, '')"
    if len(set(header)) != len(header) or any(not h for h in header):
        raise FileRejected("UNREADABLE", "header has empty or repeated column names")
    extra = [c for c in header if c not in extract.column_names]
    select = []
    for c in header:
        col = extract.column(c) if c in extract.column_names else None
        if col is not None and col.personal:
            v = text(c)
            # The NIK gets its keyed token; other personal columns only need to stay comparable
            # for duplicate detection in this temporary table, which a 128-bit digest does cheaply.
            digest = token_sql(v) if c == "nik" else f"md5({v})"
            select.append(f"case when {v} is not null then {digest} end as {quote_ident(c)}")
            if c == "nik":
                ok = f"coalesce(regexp_full_match({v}, '{NIK}'), false)"
                select += [
                    f"{ok} as nik__fmt",
                    f"case when {ok} then substr({v}, 1, 2) end as nik__prov",
                    *(f"case when {ok} then cast(substr({v}, {pos}, 2) as integer) end as nik__{part}"
                      for part, pos in (("dd", 7), ("mm", 9), ("yy", 11))),
                ]
        else:
            select.append(f"{text(c)} as {quote_ident(c)}")
    # One 64-bit hash of the whole record finds the few candidates for exact duplicates
    # without sorting every row by every column.
    select.append("hash(" + ", ".join(text(c) for c in header) + ") as _h")
    if record_number:
        select.append(f"{record_number} as _rec")
    else:
        # Newlines inside quoted fields push later records down: count them for line numbers.
        joined = "concat(" + ", ".join(quote_ident(c) for c in header) + ")"
        select.append(f"length({joined}) - length(replace({joined}, chr(10), '')) as _nl")
    sql = f"create temp table {STAGE} as select {', '.join(select)} from {source}"
    try:
        con.execute(sql, {"ipad": ipad, "opad": opad} if "$ipad" in sql else None)
    except Exception as e:  # noqa: BLE001
        what = "Parquet" if d.ext == "parquet" else "UTF-8 CSV (RFC 4180)"
        raise FileRejected("UNREADABLE", f"not readable as {what}: {safe_error(e)}") from None
    return header, extra


def _number_and_dedup(con, d: Delivery, header: list[str]) -> None:
    """Give every record its line number and rank exact duplicates (all columns equal)."""
    if d.ext == "parquet":
        numbered = f"select *, _rec as _line from {STAGE}"
    elif con.execute(f"select count(*) from {STAGE} where _nl > 0").fetchone()[0]:
        numbered = (f"select *, rowid + 1 as _rec, rowid + 2 + coalesce(sum(_nl) over "
                    f"(order by rowid rows between unbounded preceding and 1 preceding), 0) as _line from {STAGE}")
    else:
        numbered = f"select *, rowid + 1 as _rec, rowid + 2 as _line from {STAGE}"
    everything = ", ".join(quote_ident(c) for c in header)
    con.execute(f"""create temp view {ROWS} as
        with numbered as ({numbered}),
        candidates as (select _h from {STAGE} group by _h having count(*) > 1),
        ranked as (select _rec, row_number() over (partition by {everything} order by _rec) as _dup_rank
                   from numbered where _h in (select _h from candidates))
        select numbered.*, coalesce(ranked._dup_rank, 1) as _dup_rank
        from numbered left join ranked using (_rec)""")


def _validate(con, d: Delivery, extract: Extract, present: set[str]) -> None:
    sql = validation_sql(extract, ROWS, d.business_date.isoformat(), present)
    if extract.key_unique_per_file:
        key = ",".join(extract.key)
        sql = (f"select * replace (case when _key_n > 1 then list_append(_details, 'KEY_CONFLICT:{key}') "
               f"else _details end as _details) from ({sql})")
    con.execute(f"create temp table {CHECKED} as {sql}")


def _insert_rows(con, extract: Extract, load_id: int, d: Delivery) -> None:
    select = []
    for name, _ in loaded_columns(extract):
        if name == "nik_token":
            select.append("v__nik")
        elif name == "nik_consistent":
            prov = ", ".join(sql_str(p) for p in PROVINCE_CODES)
            select.append(
                f"coalesce(nik__prov in ({prov}) "
                "and nik__dd = day(v__birth_date) + case when v__gender = 'P' then 40 else 0 end "
                "and nik__mm = month(v__birth_date) and nik__yy = year(v__birth_date) % 100, false)"
            )
        elif name == "_load_id":
            select.append(str(load_id))
        elif name == "_business_date":
            select.append(f"DATE '{d.business_date}'")
        elif name == "_line":
            select.append("_line")
        else:
            select.append(quote_ident("v__" + name))
    con.execute(f"insert into {RAW}.{extract.name} select {', '.join(select)} from {CHECKED} "
                "where len(_details) = 0 order by _rec")


def _insert_quarantine(con, extract: Extract, load_id: int, d: Delivery, header: list[str]) -> None:
    # Read the delivered text back from the staging table by record number.
    record = "_rec" if d.ext == "parquet" else "rowid + 1"
    pairs = []
    for c in header:
        personal = c in extract.column_names and extract.column(c).personal
        value = f"case when r.{quote_ident(c)} is not null then '{MASK}' end" if personal else f"r.{quote_ident(c)}"
        pairs.append(f"{sql_str(c)}, {value}")
    if "nik" in header:
        pairs.append("'nik_token', r.nik")
    con.execute(
        f"insert into {RAW}.quarantine select {load_id}, {sql_str(extract.name)}, {sql_str(d.name)}, "
        f"DATE '{d.business_date}', c._line, list_sort(list_distinct(list_transform(c._details, "
        f"lambda x: split_part(x, ':', 1)))), c._details, json_object({', '.join(pairs)}) "
        f"from {CHECKED} c join (select *, {record} as _rec_of from {STAGE}) r on r._rec_of = c._rec "
        f"where len(c._details) > 0 order by c._rec"
    )


def _drop_temp(con) -> None:
    con.execute(f"drop table if exists {CHECKED}")
    con.execute(f"drop view if exists {ROWS}")
    con.execute(f"drop table if exists {STAGE}")
