"""One pipeline run without Airflow: the same steps the DAG wires together.

ingest → dbt build (+ docs) → quality gate → publish → analysts' copy. Each step is a
function the DAG calls as its own task; `run` calls them in order under one writer lock.
The methodology configuration is validated before any work starts.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ingestion.deliveries import looks_like_delivery, name_problem, require_landing
from ingestion.loader import IngestReport, ingest, quarantine_note
from ingestion.personal_data import load_key, token_scheme
from ingestion.raw_schema import ensure_raw_schema

from . import airflow_runs, run_turns
from . import methodology as methodology_config
from .methodology import Methodology
from .settings import Paths, utc_stamp
from .warehouse import connect, exclusive, first_line, ingest_memory_limit, writing_to

Progress = Callable[[str], None]


@dataclass
class RunResult:
    run_id: str
    year: int
    as_of: dt.date
    ingest: IngestReport
    record: Path
    build_seconds: float = 0.0
    models: int = 0
    data_tests: int = 0
    gate: object = None
    published: Path | None = None
    dbt_docs: Path | None = None
    rebuilt_because: str | None = None
    highlights: dict = field(default_factory=dict)
    deliveries_until: dt.date | None = None  # the latest business date of the loaded deltas
    latest_note: str | None = None  # when `latest` went back in time, or was left in place
    analysts_line: str | None = None  # what analytics.duckdb now holds, when the publication became the latest


def new_run_id() -> str:
    return utc_stamp() + "-" + secrets.token_hex(2)


def ingest_step(paths: Paths, landing: Path, run_id: str, progress: Progress = print,
                extracts: list[str] | None = None) -> IngestReport:
    landing = Path(landing)
    require_landing(landing, paths.home)  # before the warehouse is opened
    key = load_key(paths.home)
    with connect(paths, ingest_memory_limit()) as con:
        return ingest(con, landing, key, run_id, progress, extracts, paths.home)


def build_step(paths: Paths, year: int, as_of: dt.date, methodology: Methodology, progress: Progress = print,
               full_refresh: bool = False):
    from . import builds
    from .transform import build, generate_docs, models_fingerprint
    models = models_fingerprint()
    with connect(paths) as con:
        # A night with no ready file runs no ingest task: on a new home the raw layer that
        # dbt's sources name would not exist. Empty, it builds empty rankings, which the
        # gate refuses by name.
        ensure_raw_schema(con, token_scheme())
        rebuild = None if full_refresh else builds.rebuild_reason(con, models)
    if rebuild and progress:
        progress(f"rebuilding the warehouse's incremental models in full: {rebuild}")
    stamp = builds.begin(paths, year, as_of, methodology, models)
    result = build(paths, year, as_of, methodology, progress, full_refresh=full_refresh or bool(rebuild))
    result.rebuilt_because = rebuild
    builds.finish(paths, stamp)
    result.docs = generate_docs(paths, year, as_of, methodology)
    return result


def gate_step(paths: Paths, run_id: str, methodology: Methodology):
    from .quality.gate import validate
    return validate(paths, run_id, methodology)


def publish_step(paths: Paths, run_id: str, year: int, as_of: dt.date, methodology: Methodology,
                 checks: list[dict], validated_build: dict | None):
    """Publishes the marts if they are the build that the run's gate validated
    (`validated_build`, builds.StaleBuild otherwise), and brings the analysts' copy up to date."""
    from concurrent.futures import ThreadPoolExecutor

    from .builds import require_validated
    from .publication import plan_latest, publish
    from .readers import prepare_reader_copy, serve_reader_copy, served_line

    require_validated(paths, run_id, validated_build, year, as_of, methodology)
    plan = plan_latest(paths, year, as_of)
    if not plan.becomes_latest:  # the analysts' copy matches the latest publication
        return publish(paths, run_id, year, as_of, methodology, checks, plan)
    # The publication only reads the warehouse, so the analysts' copy is patched meanwhile;
    # it is served only once the publication has succeeded.
    with ThreadPoolExecutor(1) as pool:
        prepared = pool.submit(prepare_reader_copy, paths)
        publication = publish(paths, run_id, year, as_of, methodology, checks, plan)
        try:
            copy = prepared.result()
        except Exception as e:  # noqa: BLE001 - said with what did happen: the publication
            raise ReaderCopyNotUpdated(paths, publication.folder, e) from e
    publication.reader_copies = serve_reader_copy(paths, copy)
    publication.analysts_line = served_line(paths.reader_copy, publication.reader_copies)
    return publication


class ReaderCopyNotUpdated(OSError):
    """The run published, but the analysts' copy could not be brought up to date (a full
    disk): the error must not read as if nothing had been published."""

    def __init__(self, paths: Paths, folder: Path, cause: BaseException):
        first = first_line(cause)
        held = (f"{paths.reader_copy} still holds the previous publication's build" if paths.reader_copy.exists()
                else f"there is no {paths.reader_copy} yet")
        super().__init__(f"published {folder} (the year's latest), but the analysts' copy could not be brought up "
                         f"to date ({first}): {held}. Free disk space and run the same command again: it loads "
                         "nothing twice, publishes the same figures anew and brings the copy up to date")


def highlights(paths: Paths) -> dict:
    """The province totals and the top of each ranking, from the analysts' copy (read-only:
    it matches the latest publication) for run summaries and the demo; totals as published."""
    import duckdb

    from .publication import SCORE_TYPE

    con = duckdb.connect(str(paths.reader_copy), read_only=True)
    try:
        provinces = con.execute(
            "select entity_code, entity_name, claims_paid_count, claims_paid_idr, scholarship_children, "
            "scholarship_idr from marts.pemda_indicators where level = 'PROVINSI' order by entity_code").fetchall()
        tops = {}
        for ranking in ("pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk"):
            only_besar = "and size_class = 'BESAR'" if ranking == "badan_usaha" else ""
            tops[ranking] = con.execute(
                f"select rank_national, entity_code, entity_name, cast(round(total_score, 4) as {SCORE_TYPE}) "
                f"from marts.rankings_{ranking} "
                f"where rank_national is not null {only_besar} order by rank_national limit 3").fetchall()
    finally:
        con.close()
    return {"provinces": provinces, "top": tops}


def deliveries_until(paths: Paths) -> dt.date | None:
    """The latest business date that a loaded delta delivery covers (references are
    snapshots, dated when they were made), from the build's marts.delivery_freshness."""
    with connect(paths, None, read_only=True) as con:
        return con.execute("select max(last_business_date) from marts.delivery_freshness").fetchone()[0]


def as_of_note(as_of: dt.date, until: dt.date | None) -> str | None:
    """methodology.md §1 lets a run be as of Y-12-31 whatever has been delivered; a ranking
    of a year whose data end in its first days would then read as final. Say so."""
    if until is None or as_of <= until:
        return None
    return (f"note: as of {as_of}, but the deliveries end on {until}: the figures are those of {until}, "
            f"not of {as_of} (for a provisional ranking that says so, run with --as-of {until})")


def check_settings(paths: Paths | None = None, year: int | None = None) -> None:
    """The retention and publication settings (the quarantine's and the analysts' copy's
    too), the gate's days behind, and with a home and a year the year's `latest` link:
    refused before any work rather than at the gate or the publication, after the night's
    load. `paritrana run` and the DAG's first task both call it."""
    from ingestion.loader import superseded_quarantine

    from .publication import keep_publications, latest_policy, require_latest_link
    from .quality.gate import keep_gates, max_days_behind
    from .readers import reader_copy_io

    superseded_quarantine()
    keep_gates()
    max_days_behind()
    keep_publications()
    latest_policy()
    reader_copy_io()
    if paths is not None and year is not None:
        require_latest_link(paths, year)


def run(paths: Paths, landing: Path, year: int, as_of: dt.date | None = None,
        progress: Progress = print, run_id: str | None = None, config_file: Path | None = None,
        full_refresh: bool = False) -> RunResult:
    """Raises GateFailed (exit 2) when blocking checks fail; nothing is published then."""
    from .quality.gate import GateFailed

    methodology_config.require_award_year(year)  # refused before any work
    as_of = as_of or dt.date(year, 12, 31)
    methodology_config.require_as_of_in_year(year, as_of)  # likewise
    methodology = methodology_config.load(config_file, paths.home, year)  # likewise
    check_settings(paths, year)  # likewise
    run_id = run_id or new_run_id()
    progress(f"run {run_id}: year {year}, as of {as_of}, landing {landing}, warehouse {paths.warehouse}")
    progress(f"methodology configuration: {methodology.source} (sha256 {methodology.sha256[:12]}…)")
    with exclusive(paths):
        # an Airflow run's tasks take the lock one by one
        if released := run_turns.refuse_if_held(paths, functools.partial(airflow_runs.state_of, paths)):
            held, answer = released
            progress(f"the warehouse's turn was held by {held.text()}; {answer.said}: it ended without giving the "
                     "turn back, so the turn is released")
        report = ingest_step(paths, landing, run_id, progress)
        result = RunResult(run_id, year, as_of, report, paths.runs / f"{run_id}.json")
        progress("building the warehouse (dbt build)")
        build = build_step(paths, year, as_of, methodology, progress, full_refresh)
        result.build_seconds, result.dbt_docs, result.rebuilt_because = build.seconds, build.docs, build.rebuilt_because
        result.deliveries_until = deliveries_until(paths)
        if note := as_of_note(as_of, result.deliveries_until):
            progress(note)
        result.models, result.data_tests = build.count("model"), build.count("test")
        progress("validating (Great Expectations)")
        gate = gate_step(paths, run_id, methodology)
        result.gate = gate
        if gate.passed:
            progress("publishing")
            checks = [c.published() for c in gate.checks]
            publication = publish_step(paths, run_id, year, as_of, methodology, checks, gate.build)
            result.published, result.latest_note = publication.folder, publication.plan.note()
            if publication.plan.becomes_latest:  # else the analysts' copy holds another run
                result.highlights = highlights(paths)
                result.analysts_line = publication.analysts_line
        _write_record(paths, landing, result)
    if not gate.passed:
        error = GateFailed(gate)
        error.result = result
        raise error
    return result


def _write_record(paths: Paths, landing: Path, result: RunResult) -> None:
    r = result.ingest
    record = {
        "run_id": result.run_id, "year": result.year, "as_of": result.as_of.isoformat(), "landing": str(landing),
        "files": [asdict(f) for f in r.results], "already_processed": r.already_processed,
        "not_ready": r.not_ready, "orphan_controls": r.orphan_controls, "ignored": r.ignored,
        "broken_links": r.broken_links, "rows": r.rows,
        "dbt": {"seconds": round(result.build_seconds, 2), "models": result.models, "data_tests": result.data_tests,
                "rebuilt_because": result.rebuilt_because},
        "gate": result.gate.to_json() if result.gate else None,
        "published": str(result.published) if result.published else None,
        "latest_note": result.latest_note,
        "analysts_copy": result.analysts_line,
        "deliveries_until": result.deliveries_until.isoformat() if result.deliveries_until else None,
    }
    paths.runs.mkdir(parents=True, exist_ok=True)
    with writing_to(str(result.record)):
        result.record.write_text(json.dumps(record, indent=1, default=str) + "\n")


def ingest_summary(r: IngestReport) -> list[str]:
    rows = r.rows
    lines = [
        f"  files: {r.count('LOADED')} loaded, {r.count('REJECTED')} rejected, "
        f"{r.count('SKIPPED_REDELIVERY') + r.count('SKIPPED_STALE')} skipped "
        f"({r.count('SKIPPED_REDELIVERY')} re-deliveries, {r.count('SKIPPED_STALE')} stale), "
        f"{len(r.already_processed)} already processed, {len(r.not_ready)} not ready (no control file)"
        + (f", {len(r.ignored)} ignored (hidden or partial)" if r.ignored else ""),
        f"  rows:  {rows['in_file']:,} read = {rows['loaded']:,} loaded + {rows['quarantined']:,} quarantined "
        f"+ {rows['duplicate']:,} exact duplicates dropped",
    ]
    notes = delivery_notes([asdict(f) for f in r.results], r.not_ready, r.orphan_controls, r.broken_links,
                           r.ignored)
    return lines + [f"  {label:<11} {name}: {text}" for label, name, text in notes]


DELIVERY_NOTE_LABELS = ("rejected", "corrected", "quarantined", "stale", "ahead", "typed", "waiting", "orphan",
                        "broken", "ignored")


def delivery_notes(files: list[dict], not_ready, orphan_controls, broken_links,
                   ignored=()) -> list[tuple[str, str, str]]:
    """What a data engineer must look at after a load, as (label, file, what): each file
    rejected with its reason, each correction and the file whose rows it replaced (a
    night's history changed), each loaded with quarantined rows and why, each version
    skipped as stale and why, each loaded with a produced_at or business date after its
    load, each with columns of the wrong type, what waits or leads nowhere, and the ignored
    files that would be deliveries under their plain names. One wording for the run's
    summary and the DAG's."""
    notes = []
    for f in files:
        if f["status"] == "REJECTED":
            notes.append(("rejected", f["file_name"], f"{f['reason_code']} ({f['reason_detail']})"))
        elif f["status"] == "SKIPPED_STALE":
            notes.append(("stale", f["file_name"], f["reason_detail"]))
        if f["status"] == "LOADED" and f.get("superseded"):
            notes.append(("corrected", f["file_name"], f"its rows replace those loaded from {f['superseded']} "
                          "for the same extract and business date (raw.load_ledger: SUPERSEDED)"))
        if f["status"] == "LOADED" and f.get("rows_quarantined"):
            notes.append(("quarantined", f["file_name"], quarantine_note(
                f["rows_quarantined"], f["rows_in_file"], f.get("quarantine_reasons", []))))
        notes += [("ahead", f["file_name"], note) for note in f.get("ahead", [])]
        if f.get("mistyped_columns"):
            notes.append(("typed", f["file_name"], "columns not of the contract's type, judged as their text: "
                          + "; ".join(f["mistyped_columns"])))
    # A name no control file can make a delivery's would wait every night: said at once.
    notes += [("waiting", name, "no control file yet" + (
        f"; with one it would be rejected, UNKNOWN_EXTRACT: {problem}. Rename it, or move it out of the landing"
        if (problem := name_problem(Path(name).name)) else "")) for name in not_ready]
    notes += [("orphan", name, "control file without its data file") for name in orphan_controls]
    notes += [("broken", name, "a symbolic link to nothing") for name in broken_links]
    notes += [("ignored", name, "hidden (a dot in its path) or partial (.tmp, .part): never loaded under this name")
              for name in ignored if looks_like_delivery(name)]
    return notes


SHOWN_PROVINCES = 5


def province_lines(provinces: list, year: int | None = None) -> list[str]:
    """The first provinces' paid claims and scholarship children, and where the rest are: a
    national run has 38, which would bury the rest of its summary."""
    lines = [f"{name} ({code}){f', {year}' if year else ''}: {claims:,} paid claims, Rp{claims_idr:,}; "
             f"{children:,} scholarship children, Rp{children_idr:,}"
             for code, name, claims, claims_idr, children, children_idr in provinces[:SHOWN_PROVINCES]]
    if len(provinces) > SHOWN_PROVINCES:
        more = len(provinces) - SHOWN_PROVINCES
        lines.append(f"... and {more} more province{'s' if more > 1 else ''}: marts.pemda_indicators "
                     "where level = 'PROVINSI' (columns claims_paid_count, claims_paid_idr, "
                     "scholarship_children, scholarship_idr)")
    return lines


def gate_summary(gate) -> list[str]:
    lines = [f"  checks: {sum(c.passed for c in gate.checks)} passed, {len(gate.blocking_failures)} blocking failed, "
             f"{len(gate.warnings)} warnings; Data Docs {gate.data_docs}"]
    return lines + ["  " + line for line in gate.warning_lines()]


def summary(result: RunResult) -> str:
    lines = [f"Run {result.run_id} (year {result.year}, as of {result.as_of})"]
    lines += ingest_summary(result.ingest)
    lines.append(f"  warehouse: dbt built {result.models} models, {result.data_tests} data tests passed "
                 f"in {result.build_seconds:.1f} s; dbt docs {result.dbt_docs}")
    if result.rebuilt_because:
        from .builds import rebuilt_line

        lines.append(f"  {rebuilt_line(result.rebuilt_because)}")
    if result.gate is not None:
        lines += gate_summary(result.gate)
    if result.published:
        lines.append(f"  published: {result.published} (latest: {result.published.parent / 'latest'})")
    if result.latest_note:
        lines.append(f"  {result.latest_note}")
    if result.analysts_line:
        lines.append(f"  {result.analysts_line}")
    lines += ["  " + line for line in province_lines(result.highlights.get("provinces", []), result.year)]
    if note := as_of_note(result.as_of, result.deliveries_until):
        lines.append(f"  {note}")
    lines.append(f"  ledger and quarantine: tables raw.load_ledger and raw.quarantine; run record {result.record}")
    return "\n".join(lines)
