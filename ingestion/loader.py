"""Load the ready deliveries of a landing folder into the raw layer.

Per file: file-level checks in the contract's order (extracts.md §1), then one staging
scan inside DuckDB (personal data tokenised on the way in), one set-based validation,
and one transaction that loads the valid rows, quarantines the rest, supersedes the
previous file of the same extract and business date, and writes the ledger row. A
process killed mid-file leaves the warehouse as before that file; the next run redoes it.
How a file is read is `sources`; how its rows keep the file's order, `file_order`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

import numpy as np
import pyarrow as pa

from paritrana.settings import choice_setting, count_setting
from paritrana.warehouse import machine_failure, machine_stop

from .contracts import EXTRACTS, NIK, Extract
from .deliveries import (
    Delivery, FileRejected, LandingScan, control_sha256, file_digest, parse_name,
    read_control, scan_landing, extract_group,
)
from .file_order import NO_JOIN_REWRITE, ORDER_KEEPING_SINKS, read, sink
from .personal_data import MASK, Tokeniser, key_check, mask_nik_shaped, token_scheme, token_text_sql
from .physical_lines import record_start_lines
from .raw_schema import RAW, declared_columns, ensure_raw_schema, loaded_columns
from .rules import quote_ident, sql_str, validation_sql
from .sources import (
    Source, near_misses, open_source, require_readable, separator_hint, single_line_records,
)

# A large file is staged in a table of the warehouse, not a temporary one: written
# compressed as it is scanned, it stays small on disk where a temporary table of a 45 M-row
# file would spill uncompressed. It holds no personal data. When the extract's raw table
# is still empty (the initial load), the stage becomes that table once judged, so the
# rows are written once; otherwise it is dropped after the file.
# A file whose stage fits comfortably in memory (about 300 bytes a row) is staged in a
# temporary table instead, written without compression: twice as fast.
TEMP_STAGE_MAX_ROWS_ENV, TEMP_STAGE_MAX_ROWS_DEFAULT = "PARITRANA_TEMP_STAGE_MAX_ROWS", 3_000_000
# What a correction does with the quarantined rows of the file it replaces. "drop" (the
# default): the quarantine holds the current versions' rows only, as the raw tables do,
# whatever the order in which the versions arrived (a version that arrives after its
# correction is skipped, and never quarantined), and a bad national snapshot's 15 GB goes
# with it. "keep": they stay as the record of what was wrong with it (before 0.3.10).
SUPERSEDED_QUARANTINE_ENV, SUPERSEDED_QUARANTINE = "PARITRANA_SUPERSEDED_QUARANTINE", ("drop", "keep")
TEMP_STAGE, PERSISTENT_STAGE = "_ingest_stage", f"{RAW}._ingest_stage"
# Columns of the stage that only judging needs, after the raw table's own columns.
JUDGING = ("_nl", "_details", "_h1", "_content")
DUPS, CONFLICTS, LINES, REREAD = "_ingest_dups", "_ingest_conflicts", "_ingest_lines", "_ingest_reread"
SUSPECTS, SUSPECT_ROWS = "_ingest_suspects", "_ingest_suspect_rows"
DELIVERED = "_ingest_delivered"

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
    # Parquet columns whose type is not the contract's (`column TYPE, date expected`)
    mistyped_columns: list[str] = field(default_factory=list)
    # Dates of a loaded file that lie after its load, said in words (ahead_notes)
    ahead: list[str] = field(default_factory=list)
    # Why its rows were quarantined, the commonest first: [reason:column, rows] (quarantine_reasons)
    quarantine_reasons: list[list] = field(default_factory=list)


@dataclass
class IngestReport:
    results: list[FileResult]
    already_processed: list[str]
    not_ready: list[str]
    orphan_controls: list[str]
    ignored: list[str]
    broken_links: list[str] = field(default_factory=list)

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
           extracts: Collection[str] | None = None, home: Path | None = None) -> IngestReport:
    """Load every ready delivery of the landing folder, or only those of `extracts`
    (extract names, or deliveries.UNRECOGNISED); the warehouse's `home`, when inside the
    landing, is not scanned."""
    scheme = token_scheme()
    tokeniser = Tokeniser.for_key(key, scheme)  # an unknown scheme fails before anything is written
    temp_stage_max_rows()  # so does a bad PARITRANA_TEMP_STAGE_MAX_ROWS
    superseded_quarantine()  # and PARITRANA_SUPERSEDED_QUARANTINE
    ensure_raw_schema(con, scheme, key_check(key))
    _drop_temp(con)  # a stage left by a killed load
    previous_optimizers = con.execute("select current_setting('disabled_optimizers')").fetchone()[0]
    con.execute(f"set disabled_optimizers = '{','.join(filter(None, [previous_optimizers, NO_JOIN_REWRITE]))}'")
    try:
        return _ingest_ready(con, landing, run_id, progress, extracts, tokeniser, home)
    except (PermissionError, FileNotFoundError) as e:
        if not _in_folder(e.filename, landing):  # the home's own files, say: not a delivery's fault
            raise
        raise LandingFileUnreadable.of(e) from e
    finally:
        con.execute(f"set disabled_optimizers = '{previous_optimizers}'")


def _in_folder(name, folder: Path) -> bool:
    return bool(name) and Path(os.path.abspath(name)).is_relative_to(os.path.abspath(folder))


class LandingFileUnreadable(OSError):
    """A landing file this process may not read, or that went away while the run read the
    landing: not the file's fault (so not UNREADABLE, which is for good), and nothing of it
    is recorded; the run stops, and the same command finishes the job once it is fixed."""

    @classmethod
    def of(cls, e: OSError) -> "LandingFileUnreadable":
        import getpass

        name = e.filename or "a landing file"
        if isinstance(e, PermissionError):
            return cls(f"cannot read {name}: permission denied to user {getpass.getuser()}; nothing of it was "
                       "recorded. Give this user read access (uploads are often private to the user that wrote "
                       "them) and run the same command again")
        return cls(f"{name} went away while the run read the landing; nothing of it was recorded. Run the same "
                   "command again")


def _ingest_ready(con, landing: Path, run_id: str, progress: Progress, extracts: Collection[str] | None,
                  tokeniser: Tokeniser, home: Path | None) -> IngestReport:
    scan: LandingScan = scan_landing(landing, home)
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
            try:
                if d.name in early:
                    raise early[d.name]
                result = _load_one(con, d, run_id, started, tokeniser)
            except FileRejected as r:
                result = FileResult(d.name, "REJECTED", d.extract, d.business_date, r.code, r.detail)
                _record(con, d, run_id, started, result)
        except BaseException as e:
            with contextlib.suppress(Exception):  # the error that stopped the file is the one to report
                _drop_temp(con)
            if machine_failure(e):
                raise machine_stop(e, f"loading {d.name}") from e
            raise
        _drop_temp(con)
        result.seconds = time.perf_counter() - t0
        results.append(result)
        progress("    " + describe(result))
    return IngestReport(results, done, scan.not_ready, scan.orphan_controls, scan.ignored, scan.broken_links)


# A provider's clock may run a little fast; more than this ahead of the load is not a clock drift
# but a wrong date, and it matters: no later correction with a true produced_at can replace the file.
CLOCK_TOLERANCE = dt.timedelta(hours=1)


def ahead_of_load(produced_at: dt.datetime, loaded_at: dt.datetime) -> bool:
    return produced_at > loaded_at + CLOCK_TOLERANCE


def _utc(t: dt.datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M} UTC"


def ahead_notes(control, loaded_at: dt.datetime) -> list[str]:
    """What in a file's control lies in the future of its load. Neither breaks the contract,
    and both are loaded; both are almost surely mistakes the engineer must hear of: a file
    produced in 2099 outranks every true correction after it, and a business date to come
    (a wrong name) extends the data past every as-of date."""
    notes = []
    if ahead_of_load(control.produced_at, loaded_at):
        notes.append(f"produced_at {_utc(control.produced_at)} is later than its load: a correction of this extract "
                     "and date replaces it only with a later produced_at still")
    # A business date is a Jakarta day; the load's UTC date may still be the day before.
    if control.business_date > loaded_at.date() + dt.timedelta(days=1):
        notes.append(f"business date {control.business_date} is after its load ({loaded_at:%Y-%m-%d}): a file named "
                     "for a day to come? Its rows count from that day on")
    return notes


def stale_detail(produced_at: dt.datetime, loaded_name: str, loaded_produced_at: dt.datetime,
                 loaded_at: dt.datetime) -> str:
    """Why a version was skipped, with both times: the engineer must see which clock to doubt."""
    if loaded_produced_at > produced_at:
        s = (f"produced {_utc(produced_at)}, before the loaded file {loaded_name} "
             f"({_utc(loaded_produced_at)}), which stays")
    else:
        s = (f"produced {_utc(produced_at)}, at the same time as the loaded file {loaded_name}, which stays "
             "(a tie goes to the later name)")
    if ahead_of_load(loaded_produced_at, loaded_at):
        s += (f"; that file's produced_at is later than its own load ({_utc(loaded_at)}), a wrong clock at the "
              f"provider? To replace it, send this file again with a produced_at after {_utc(loaded_produced_at)}")
    return s


def describe(r: FileResult) -> str:
    if r.status == "LOADED":
        s = (f"loaded {r.rows_loaded:,} of {r.rows_in_file:,} rows, quarantined {r.rows_quarantined:,}, "
             f"duplicates {r.rows_duplicate:,}")
        if r.superseded:
            s += f"; correction of {r.superseded}"
        if r.extra_columns:
            s += f"; ignored unknown columns {', '.join(r.extra_columns)}"
        if r.mistyped_columns:
            s += f"; columns not of the contract's type, judged as their text: {'; '.join(r.mistyped_columns)}"
        if r.rows_quarantined:
            s += "; " + quarantine_note(r.rows_quarantined, r.rows_in_file, r.quarantine_reasons)
        for note in r.ahead:
            s += "; " + note
        return s + f" ({r.seconds:.1f} s)"
    return f"{r.status} {r.reason_code}: {r.reason_detail}"


# Reasons named per file; the quarantine table has every row's.
REASONS_SHOWN = 3


def quarantine_note(quarantined: int, rows: int, reasons: list) -> str:
    """A file's quarantine in words, its commonest reasons first: the counts alone hid a
    file whose every row was quarantined (dates in another format, a shifted column)."""
    shown = ", ".join(f"{reason} {count:,}" for reason, count in reasons[:REASONS_SHOWN])
    more = f", {len(reasons) - REASONS_SHOWN} more" if len(reasons) > REASONS_SHOWN else ""
    share = f"every row ({rows:,}) quarantined" if quarantined == rows else \
        f"{quarantined:,} of {rows:,} rows quarantined ({quarantined / rows:.1%})"
    return f"{share}: {shown}{more}"


def quarantine_reasons(con, load_id: int) -> list[list]:
    """[reason:column, rows] for one load's quarantined rows, the commonest first (a row
    counts once under each of its reasons)."""
    return [list(r) for r in con.execute(
        f"select detail, count(*) as n from (select unnest(reason_details) as detail from {RAW}.quarantine "
        "where load_id = ?) group by detail order by n desc, detail", [load_id]).fetchall()]


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
        f"select load_id, file_name, data_sha256, produced_at, started_at from {RAW}.load_ledger "
        "where extract = ? and business_date = ? and status = 'LOADED'",
        [extract, business_date],
    ).fetchone()


def _load_one(con, d: Delivery, run_id: str, started, tokeniser: Tokeniser) -> FileResult:
    extract = EXTRACTS[d.extract]
    current = _current_load(con, d.extract, d.business_date)
    # Versions are ordered by produced_at and, on a tie, by name, as a run sorts the files
    # it finds (Delivery.sort_key): so one run or several, in any order, keep the same one.
    stale = current is not None and (current[3], current[1]) > (d.control.produced_at, d.name)
    if current and (current[2] == d.control.sha256 or stale):
        # Most likely a re-delivery or a stale version: decided by the digest, no scan.
        d.digest = file_digest(d.path)
        _check_digest(d)
        if current[2] == d.data_sha256:
            result = FileResult(d.name, "SKIPPED_REDELIVERY", d.extract, d.business_date, "REDELIVERY",
                                f"same bytes as loaded file {current[1]}: nothing to do")
        else:
            result = FileResult(d.name, "SKIPPED_STALE", d.extract, d.business_date, "STALE_VERSION",
                                stale_detail(d.control.produced_at, current[1], current[3], current[4]))
        _record(con, d, run_id, started, result)
        return result

    # Otherwise the file is scanned whatever its digest, so the digest (one core, a
    # tenth of a national file's load) is taken while DuckDB scans. Its verdict still
    # comes first: a file that does not match its control file is CONTROL_MISMATCH
    # however else it fails (extracts.md §1), and nothing is loaded before it is known.
    rejected = None
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(file_digest, d.path, d.ext == "csv.gz")
        try:
            source = open_source(con, d, extract)
            source.stage = _stage_table(d.control.row_count)
            missing = [c for c in extract.header_required if c not in source.header]
            if missing:
                require_readable(con, d, source)  # an unreadable file is UNREADABLE first (extracts.md §1)
                raise FileRejected("MISSING_COLUMN", f"required column(s) absent from the header: "
                                   f"{', '.join(missing)}{near_misses(missing, source.header)}"
                                   f"{separator_hint(source.header)}")
            load_id = _next_load_id(con)
            _scan(con, d, extract, source, tokeniser, load_id)
        except FileRejected as r:
            rejected = r
        d.digest = digest.result()
    _check_digest(d)
    if rejected and rejected.line and not single_line_records(d):
        # The reader's line number leaves out line breaks inside quoted fields: say so
        # unless the file's line breaks prove it has none.
        raise FileRejected(rejected.code, f"{rejected.detail} (a line number that does not count line "
                           "breaks inside quoted fields above it)", rejected.line)
    if rejected:
        raise rejected
    n_rows = con.execute(f"select count(*) from {source.stage}").fetchone()[0]
    if n_rows != d.control.row_count:
        raise FileRejected("CONTROL_MISMATCH", f"file has {n_rows:,} data rows, control file says {d.control.row_count:,}")
    if source.single_line and not single_line_records(d):
        # The scan took every record for one line; the file's line breaks say a quoted
        # field holds one. Rare: scan again, counting them (line numbers).
        source.single_line = False
        _drop_temp(con)
        _scan(con, d, extract, source, tokeniser, load_id)

    judged = _judge_whole_file(con, d, extract, source, tokeniser)
    result = FileResult(d.name, "LOADED", d.extract, d.business_date, rows_in_file=n_rows,
                        rows_loaded=n_rows - judged.duplicates - judged.quarantined,
                        rows_quarantined=judged.quarantined, rows_duplicate=judged.duplicates,
                        extra_columns=source.extra, mistyped_columns=source.mistyped,
                        ahead=ahead_notes(d.control, started))
    # Checked before the transaction: nothing else writes the warehouse during ingestion.
    becomes_table = source.stage == PERSISTENT_STAGE and _is_empty(con, extract)
    con.execute("begin transaction")
    try:
        _record(con, d, run_id, started, result, load_id)
        if current:
            con.execute(f"delete from {RAW}.{extract.name} where _load_id = ?", [current[0]])
            con.execute(f"update {RAW}.load_ledger set status = 'SUPERSEDED', superseded_by = ? where load_id = ?",
                        [load_id, current[0]])
            if superseded_quarantine() == "drop":  # its count stays in the ledger
                con.execute(f"delete from {RAW}.quarantine where load_id = ?", [current[0]])
            result.superseded = current[1]
        if judged.quarantined:
            _insert_quarantine(con, extract, load_id, d, judged)
            result.quarantine_reasons = quarantine_reasons(con, load_id)
        if becomes_table:
            _stage_becomes_table(con, extract, d, judged)
        else:
            _insert_rows(con, extract, d, judged)
        con.execute("commit")
    except BaseException:
        # A commit that failed (its log could not be written) has ended the transaction
        # already: the rollback must not hide why.
        with contextlib.suppress(Exception):
            con.execute("rollback")
        raise
    return result


def _check_digest(d: Delivery) -> None:
    if d.data_sha256 != d.control.sha256:
        raise FileRejected("CONTROL_MISMATCH", "sha256 of the data file differs from the control file")


def _next_load_id(con) -> int:
    return con.execute(f"select coalesce(max(load_id), 0) + 1 from {RAW}.load_ledger").fetchone()[0]


def _is_empty(con, extract: Extract) -> bool:
    return con.execute(f"select count(*) from {RAW}.{extract.name}").fetchone()[0] == 0


def _record(con, d: Delivery, run_id: str, started, r: FileResult, load_id: int | None = None) -> int:
    load_id = load_id or _next_load_id(con)
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


def superseded_quarantine() -> str:
    """$PARITRANA_SUPERSEDED_QUARANTINE: "drop" (the default) or "keep"."""
    return choice_setting(SUPERSEDED_QUARANTINE_ENV, SUPERSEDED_QUARANTINE)


def temp_stage_max_rows() -> int:
    """$PARITRANA_TEMP_STAGE_MAX_ROWS: the largest file (rows) staged in a temporary table."""
    return count_setting(TEMP_STAGE_MAX_ROWS_ENV, str(TEMP_STAGE_MAX_ROWS_DEFAULT), "rows", minimum=0)


def _stage_table(expected_rows: int) -> str:
    return TEMP_STAGE if expected_rows <= temp_stage_max_rows() else PERSISTENT_STAGE


def _is_personal(extract: Extract, c: str) -> bool:
    """Whether a column's values stay in ingestion: the contract's personal data, and any
    column the contract does not know, which is ignored (extracts.md §1) and may hold
    anything (an heir's NIK, a mother's maiden name). In the quarantine both are masked;
    for exact duplicates both are compared as keyed digests."""
    return c not in extract.column_names or extract.column(c).personal


def _delivered(extract: Extract, source: Source, tokeniser: Tokeniser, name_digest: bool) -> list[str]:
    """The select list of a record's delivered text, one expression per header column,
    personal ones replaced: the NIK by its keyed token (plus the parts of it that the
    consistency rule needs), a name by a keyed digest when `name_digest`, else only by
    whether it is there. An unkeyed digest of a name could be reversed with a list of
    names; a keyed one is only needed to tell duplicates apart (`_exact_duplicates`)."""
    delivered = []
    for c in source.header:
        v = source.text(c)
        if c in source.typed:
            delivered.append(quote_ident(c))
        elif not _is_personal(extract, c):
            delivered.append(f"{v} as {quote_ident(c)}")
        elif c == "nik":
            delivered.append(f"case when {v} is not null then {tokeniser.token_sql(v)} end as {quote_ident(c)}")
            ok = f"coalesce(regexp_full_match({v}, '{NIK}'), false)"
            delivered += [
                f"{ok} as nik__fmt",
                f"case when {ok} then substr({v}, 1, 2) end as nik__prov",
                # DDMMYY as one number: one cut and cast where three cost 1.5 s a 10 M rows
                f"case when {ok} then cast(substr({v}, 7, 6) as integer) end as nik__ddmmyy",
            ]
        else:
            digest = tokeniser.name_digest_sql(v) if name_digest else f"'{MASK}'"
            delivered.append(f"case when {v} is not null then {digest} end as {quote_ident(c)}")
    return delivered


def _fingerprint(extract: Extract, field: Callable[[str], str]) -> str:
    """A 64-bit hash of the record's delivered key and version (`field`: SQL for one
    column's text): rows that do not share it are not exact duplicates, and in a sound
    file almost no two rows share it. Hashing every field instead cost 2 s of CPU per
    10 M rows. No personal field is in it."""
    return f"hash({', '.join(field(c) for c in extract.usually_distinct)})"


def _scan(con, d: Delivery, extract: Extract, source: Source, tokeniser: Tokeniser, load_id: int) -> None:
    """The one pass over the file: parse, tokenise, validate every record and keep what the
    load needs in the stage table, in file order (its rowid is the record index).

    The stage has the raw table's columns, in its order and types (valid values, NULL
    where invalid), then the JUDGING columns: the count of line breaks inside quoted
    fields (line numbers), the reason details, a hash of the record's key and version
    (`_fingerprint`: exact duplicates are looked for only among rows that share it), and,
    for rows that break a rule, the delivered content with personal data masked (the
    quarantine). No raw NIK or name, nor an unkeyed digest of one, reaches the stage."""
    delivered = _delivered(extract, source, tokeniser, name_digest=False)
    if source.record:
        delivered += [f"{source.record} as _rec", "cast(0 as bigint) as _nl"]
    elif source.single_line:
        delivered.append("cast(0 as bigint) as _nl")
    else:
        # Newlines inside quoted fields push later records down: count them for line
        # numbers, only in the rare records that hold one.
        any_nl = " or ".join(f"contains({quote_ident(c)}, chr(10))" for c in source.header)
        joined = "concat(" + ", ".join(quote_ident(c) for c in source.header) + ")"
        delivered.append(f"case when {any_nl} then length({joined}) - length(replace({joined}, chr(10), '')) "
                         "else 0 end as _nl")
    keep = ("_rec", "_nl", *source.header) if source.record else ("_nl", *source.header)
    delivered_sql = f"select {', '.join(delivered)} from {source.relation}"
    if source.sequential:
        # A compressed file is read by one thread, and the rest of the scan would run on
        # that thread too: its delivered text (personal data already tokenised or masked)
        # goes to a temporary table first, so validating and writing use every core.
        read(con, d, tokeniser, f"create temp table {DELIVERED} as {delivered_sql}", in_file_order=True)
        delivered_sql = f"select * from {DELIVERED}"
    validated = validation_sql(extract, f"({delivered_sql})", d.business_date.isoformat(), set(source.header), keep,
                               typed=source.typed)
    raw_columns = []
    for name, sql_type in declared_columns(con, extract):
        value = {"nik_token": "checked.v__nik", "nik_consistent": "checked.nik_consistent",
                 "_load_id": str(load_id), "_business_date": f"DATE '{d.business_date}'",
                 "_line": "checked._rec" if source.record else "null"}.get(name, f"checked.{quote_ident('v__' + name)}")
        raw_columns.append(f"cast({value} as {sql_type}) as {quote_ident(name)}")
    token = "checked.nik" if "nik" in source.header else None
    fingerprint = _fingerprint(extract, lambda c: source.text_of(c, "checked." + quote_ident(c)))
    judging = [
        "checked._nl", "checked._details", f"{fingerprint} as _h1",
        f"case when len(checked._details) > 0 then {_content_sql(extract, source, 'checked', token)} end "
        "as _content",
    ]
    read(con, d, tokeniser, f"create {'temp ' if source.stage == TEMP_STAGE else ''}table {source.stage} as "
                            f"select {', '.join(raw_columns + judging)} from ({validated}) checked",
         in_file_order=source.record is None)
    con.execute(f"drop table if exists {DELIVERED}")


def _content_sql(extract: Extract, source: Source, alias: str, token: str | None) -> str:
    """The delivered row as JSON with personal data masked (the quarantine's `content`),
    plus the NIK's token so that a quarantined person can still be looked up."""
    pairs = []
    for c in source.header:
        q = f"{alias}.{quote_ident(c)}"
        pairs.append(f"{sql_str(c)}, case when {q} is not null then '{MASK}' end" if _is_personal(extract, c)
                     else f"{sql_str(c)}, {mask_nik_shaped(source.text_of(c, q))}")
    if token:
        pairs.append(f"'nik_token', {token_text_sql(token)}")
    return f"json_object({', '.join(pairs)})"


@dataclass
class Judged:
    """What the whole file decides about its rows, beyond each row's own rules."""
    duplicates: int
    quarantined: int
    conflicts: int
    line_table: bool
    stage: str


def _judge_whole_file(con, d: Delivery, extract: Extract, source: Source, tokeniser: Tokeniser) -> Judged:
    """Exact duplicates (all but the first copy are counted, not loaded), KEY_CONFLICT
    among the distinct rows, and line numbers when quoted fields hold line breaks: each on
    narrow columns of the stage, and each skipped when the file has none."""
    # Most files have neither duplicates nor conflicts, and a sort says so (`_repeats`).
    # Where the key must be unique in a file, one sort of the stage's key answers both:
    # exact duplicates share their key too.
    key = ", ".join(quote_ident(k) for k in extract.key)
    key_repeats = extract.key_unique_per_file and _repeats(con, source.stage, f"hash({key})")
    may_have_duplicates = key_repeats or not extract.key_unique_per_file
    duplicates = 0
    if may_have_duplicates and _repeats(con, source.stage, "_h1"):
        duplicates = _exact_duplicates(con, d, extract, source, tokeniser)
    not_dup = f"rowid not in (select r from {DUPS})" if duplicates else "true"
    conflicts = 0
    if key_repeats:
        key_set = " and ".join(f"{quote_ident(k)} is not null" for k in extract.key)
        con.execute(f"""create temp table {CONFLICTS} as
            with kept as (select rowid as r, {key} from {source.stage} where {key_set} and {not_dup})
            select r from kept semi join (select {key} from kept group by {key} having count(*) > 1) using ({key})""")
        conflicts = con.execute(f"select count(*) from {CONFLICTS}").fetchone()[0]
        if conflicts:
            _content_of_conflicts(con, d, extract, source, tokeniser)
    line_table = False
    if not (source.record or source.single_line):
        rows, breaks_inside = con.execute(
            f"select count(*), coalesce(sum(_nl), 0) from {source.stage}").fetchall()[0]
        if _empty_lines_between_records(d, rows, breaks_inside):
            _lines_read_again(con, d, rows)
            line_table = True
        elif breaks_inside:
            con.execute(f"""create temp table {LINES} as select rowid as r, rowid + 2 + coalesce(sum(_nl) over
                (order by rowid rows between unbounded preceding and 1 preceding), 0) as line from {source.stage}""")
            line_table = True
    conflict = f"rowid in (select r from {CONFLICTS})" if conflicts else "false"
    quarantined = con.execute(
        f"select count(*) from {source.stage} where (len(_details) > 0 or {conflict}) and {not_dup}").fetchone()[0]
    return Judged(duplicates, quarantined, conflicts, line_table, source.stage)


def _empty_lines_between_records(d: Delivery, rows: int, breaks_inside: int) -> bool:
    """Whether the text has more line breaks than its header, its records and their quoted
    fields account for, beyond the empty lines at its very end (which move no record)."""
    if d.digest is None or d.digest.newlines is None:
        return False
    accounted = 1 + rows + breaks_inside - (0 if d.digest.ends_with_newline else 1)
    return d.digest.newlines - accounted > d.digest.trailing_blank_lines


def _lines_read_again(con, d: Delivery, rows: int) -> None:
    """Table LINES from the file's own line breaks (`physical_lines`): empty lines between
    records, which the reader skips, still count."""
    starts = record_start_lines(d.path, d.ext == "csv.gz")
    if len(starts) != rows:  # a quote the reader took as text (inside an unquoted field)
        raise FileRejected("UNREADABLE", f"empty lines between records, and quotes that RFC 4180 does not "
                           f"allow, leave the records' lines unknown ({len(starts):,} records by its line "
                           f"breaks and quotes, {rows:,} read)")
    con.register("_record_lines", pa.table({"r": np.arange(rows, dtype=np.int64), "line": starts}))
    try:
        con.execute(f"create temp table {LINES} as select r, line from _record_lines")
    finally:
        con.unregister("_record_lines")


def _repeats(con, stage: str, value_sql: str) -> bool:
    """Whether two rows of the stage share `value_sql`, a 64-bit hash (never NULL): with the
    values sorted, whether any equals its predecessor. The one column is sorted by NumPy, in
    place: for 51.7 M values (the national participants file) 0.8 s, 1 CPU-s and 350 MB,
    where DuckDB's window over the sorted values took 2.1 s, 4.1 CPU-s and 1 GB, and the
    hash table of a GROUP BY or a distinct count 3.5 to 5.7 s (docs/performance.md, session 48)."""
    (values,) = con.execute(f"select {value_sql} as v from {stage}").fetchnumpy().values()
    values.sort()
    return bool(np.any(values[1:] == values[:-1]))


def _exact_duplicates(con, d: Delivery, extract: Extract, source: Source, tokeniser: Tokeniser) -> int:
    """Table DUPS: the stage rows that repeat an earlier record of the file exactly, every
    delivered field alike. Only rows sharing a fingerprint can; their records are read
    again from the file (the others are skipped by the fingerprint before anything is
    hashed), with the NIK as its token and a name as its keyed digest, and compared whole.
    The k-th record of the file with a fingerprint is the k-th stage row with it: the stage
    is in file order, and the records read again are numbered as read, before the filter
    (`Source.record_as_read`, in file order as `read` checks; this runs only when
    fingerprints repeat)."""
    stage = source.stage
    con.execute(f"""create temp table {SUSPECTS} as
        select rowid as r, _h1, row_number() over (partition by _h1 order by rowid) as k from {stage}
        where _h1 in (select _h1 from {stage} group by _h1 having count(*) > 1)""")
    delivered = ", ".join(_delivered(extract, source, tokeniser, name_digest=True))
    fingerprint = _fingerprint(extract, source.text)
    read(con, d, tokeniser, f"""create temp table {SUSPECT_ROWS} as
        select {delivered}, _h1, _rec
        from (select *, {fingerprint} as _h1, {source.record_as_read} as _rec
              from {source.relation})
        where _h1 in (select _h1 from {SUSPECTS})""", numbered=source.record is None)
    suspects, reread = con.execute(
        f"select (select count(*) from {SUSPECTS}), (select count(*) from {SUSPECT_ROWS})").fetchone()
    if suspects != reread:  # the file changed under us: its digest was checked before the scan
        raise RuntimeError(f"{source.relation}: {reread} records share a fingerprint on reading again, "
                           f"{suspects} in the scan")
    fields = ", ".join(f"x.{quote_ident(c)}" for c in source.header)
    con.execute(f"""create temp table {DUPS} as
        select s.r from {SUSPECTS} s
        join (select *, row_number() over (partition by _h1 order by _rec) as k from {SUSPECT_ROWS}) x
          on x._h1 = s._h1 and x.k = s.k
        qualify row_number() over (partition by {fields} order by s.r) > 1""")
    return con.execute(f"select count(*) from {DUPS}").fetchone()[0]


def _content_of_conflicts(con, d: Delivery, extract: Extract, source: Source, tokeniser: Tokeniser) -> None:
    """Rows whose only fault is KEY_CONFLICT were valid during the scan, so their content
    was not kept: read those records again (rare; one more pass over the file)."""
    missing = con.execute(f"select list(r) from {CONFLICTS} c join {source.stage} s on s.rowid = c.r "
                          "where s._content is null").fetchone()[0]
    if not missing:
        return
    # Personal columns are masked in this pass; the token is taken from the stage.
    texts = ", ".join(f"case when {source.text(c)} is not null then '{MASK}' end as {quote_ident(c)}"
                      if _is_personal(extract, c) else f"{source.text(c)} as {quote_ident(c)}"
                      for c in source.header)
    read(con, d, tokeniser, f"""create temp table {REREAD} as
        select _rec - 1 as r, * exclude (_rec)
        from (select {source.record_as_read} as _rec, {texts} from {source.relation})
        where _rec - 1 in (select unnest($missing::bigint[]))""",
         numbered=source.record is None, params={"missing": missing})
    content = _content_sql(extract, source, "x", f"{source.stage}.nik_token" if "nik" in source.header else None)
    con.execute(f"update {source.stage} set _content = {content} "
                f"from {REREAD} x where {source.stage}.rowid = x.r")


def _insert_rows(con, extract: Extract, d: Delivery, judged: Judged) -> None:
    select = [_line_sql(d, judged) if name == "_line" else f"s.{quote_ident(name)}"
              for name, _ in loaded_columns(extract)]
    con.execute(f"insert into {RAW}.{extract.name} select {', '.join(select)} from {judged.stage} s "
                f"{_line_join(judged)} where not ({_left_out(judged)})")


def _stage_becomes_table(con, extract: Extract, d: Delivery, judged: Judged) -> None:
    """The stage becomes the (empty) raw table: its line numbers are filled in, the rows
    that are not loaded and the judging columns dropped, then it takes the table's name.
    Inside the load's transaction, like the insert it replaces."""
    stage = judged.stage
    if d.ext != "parquet":
        if judged.line_table:
            con.execute(f"update {stage} set _line = l.line from {LINES} l where l.r = {stage}.rowid")
        else:
            con.execute(f"update {stage} set _line = rowid + 2")
    con.execute(f"delete from {stage} s where {_left_out(judged)}")
    for column in JUDGING:
        con.execute(f"alter table {stage} drop column {column}")
    con.execute(f"drop table {RAW}.{extract.name}")
    con.execute(f"alter table {stage} rename to {extract.name}")


def _left_out(judged: Judged) -> str:
    """The stage rows that are not loaded: quarantined or exact duplicates."""
    out = ["len(s._details) > 0"]
    if judged.duplicates:
        out.append(f"s.rowid in (select r from {DUPS})")
    if judged.conflicts:
        out.append(f"s.rowid in (select r from {CONFLICTS})")
    return " or ".join(out)


def _line_sql(d: Delivery, judged: Judged) -> str:
    if d.ext == "parquet":
        return "s._line"
    return "l.line" if judged.line_table else "s.rowid + 2"


def _line_join(judged: Judged) -> str:
    return f"join {LINES} l on l.r = s.rowid" if judged.line_table else ""


def _insert_quarantine(con, extract: Extract, load_id: int, d: Delivery, judged: Judged) -> None:
    details = "s._details"
    faulty = "len(s._details) > 0"
    if judged.conflicts:
        key = ",".join(extract.key)
        details = (f"case when s.rowid in (select r from {CONFLICTS}) "
                   f"then list_append(s._details, 'KEY_CONFLICT:{key}') else s._details end")
        faulty = f"(len(s._details) > 0 or s.rowid in (select r from {CONFLICTS}))"
    where = faulty + (f" and s.rowid not in (select r from {DUPS})" if judged.duplicates else "")
    insert = (f"insert into {RAW}.quarantine select {load_id}, {sql_str(extract.name)}, {sql_str(d.name)}, "
              f"DATE '{d.business_date}', {_line_sql(d, judged)}, list_sort(list_distinct(list_transform({details}, "
              f"lambda x: split_part(x, ':', 1)))), {details}, s._content "
              f"from {judged.stage} s {_line_join(judged)} where {where}")
    # Rows go in line order. A plan of scan, filter and projections writes them in the stage's
    # order as it is; a join (line numbers, duplicates, conflicts) would not, and only then is
    # the sort worth its cost (2.8 s of a 5 M-row file whose every row failed).
    if sink(con, insert) not in ORDER_KEEPING_SINKS:
        insert += " order by s.rowid"
    con.execute(insert)


def _drop_temp(con) -> None:
    for table in (TEMP_STAGE, DELIVERED, DUPS, CONFLICTS, LINES, REREAD, SUSPECTS, SUSPECT_ROWS,
                  PERSISTENT_STAGE):
        con.execute(f"drop table if exists {table}")
    con.execute("drop schema if exists _ingest cascade")  # where earlier versions staged
