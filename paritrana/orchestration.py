"""The bodies of the nightly DAG's tasks (dags/paritrana_nightly.py only wires them).

Each function takes and returns small JSON-able values (XCom), takes the writer lock for
its own step, and is idempotent: clearing and re-running any task gives the same result
(ingestion skips processed files, dbt rebuilds, the gate re-validates, publication of a
run id replaces that run's folder).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path

from . import methodology as methodology_config
from .settings import Paths, resolve_home

log = logging.getLogger("paritrana")
JAKARTA = dt.timezone(dt.timedelta(hours=7))
LANDING_ENV = "PARITRANA_LANDING"


def locations() -> tuple[Paths, Path]:
    """HOME from $PARITRANA_HOME; landing from $PARITRANA_LANDING, else HOME/landing."""
    paths = resolve_home(None)
    landing = Path(os.environ.get(LANDING_ENV) or paths.home / "landing")
    return paths, landing


def run_dates(logical_date: dt.datetime, year: int | None = None) -> tuple[int, dt.date]:
    """The nightly run at 01:00 WIB on day N processes business date N-1: that is the
    as-of date, and its year the assessment year (a provisional run). With `year` given
    (e.g. in January, the final run for last year) the as-of date is capped at Y-12-31; a
    night before year Y has no as-of date in it and is refused."""
    business_date = logical_date.astimezone(JAKARTA).date() - dt.timedelta(days=1)
    if year is None or (isinstance(year, str) and not year.strip()):  # the trigger form's empty field
        return business_date.year, business_date
    try:
        year = int(year)
    except (TypeError, ValueError):
        raise ValueError(f"the DAG's param year must be a year such as 2024 (or empty), not {year!r}") from None
    methodology_config.require_award_year(year, "the DAG's param year")
    as_of = min(business_date, dt.date(year, 12, 31))
    methodology_config.require_as_of_in_year(year, as_of)
    return year, as_of


def full_refresh_param(value) -> bool:
    """The DAG's param full_refresh, from the trigger form (a boolean) or a CLI conf, where
    `-c '{"full_refresh": "false"}'` gives text, which bool() would take for true."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"the DAG's param full_refresh must be true or false, not {value!r}")


def safe_run_id(airflow_run_id: str) -> str:
    """A publication folder name from an Airflow run id ("scheduled__2025-01-01T18:00:00+00:00")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", airflow_run_id).strip("-")


def load_methodology(paths: Paths, year: int, config: str | None):
    return methodology_config.load(Path(config) if config else None, paths.home, year)


def _this_run(context):
    """The task's run (run_turns.Run), from its Airflow context, and how to ask Airflow
    whether a run is live (the task API, since a task may not read Airflow's database)."""
    from .run_turns import LIVE_STATES, Run

    ti, dag_run = context["ti"], context["dag_run"]
    started = (dag_run.start_date or dag_run.run_after).astimezone(dt.timezone.utc)

    def live(run: Run) -> bool:
        return ti.get_dr_count(dag_id=run.dag_id, run_ids=[run.run_id], states=list(LIVE_STATES)) > 0

    return Run(context["dag"].dag_id, context["run_id"], started.isoformat(timespec="microseconds")), live


def wait_for_turn(paths: Paths, context) -> bool:
    """The first task's poke: True once this run holds the warehouse's turn (run_turns)."""
    from . import run_turns

    me, live = _this_run(context)
    alone = context["ti"].get_dr_count(dag_id=me.dag_id, states=list(run_turns.LIVE_STATES)) <= 1
    ahead, held = run_turns.ask(paths, me, live, alone)
    if ahead:
        log.warning("waiting: %s", f"{held.text()} holds the warehouse's turn" if held else
                    "other runs are live: one ask's wait, so that those started before this one queue ahead"
                    if me.same(ahead) else f"{ahead.text()} started first and takes the warehouse's turn next")
    return ahead is None


def hold_turn(paths: Paths, context) -> None:
    """Every writing task: NotYourTurn (retried) while another live run holds the turn."""
    from . import run_turns

    run_turns.hold(paths, *_this_run(context))


def give_back_turn(paths: Paths, context) -> bool:
    from . import run_turns

    return run_turns.give_back(paths, _this_run(context)[0])


def find_deliveries(landing: Path, home: Path | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """The extract groups with ready files (control file present), one ingest task each, and
    what else the landing holds, for the run's summary: on a night with no ready file no
    ingest task runs to report a data file waiting for its control file."""
    from ingestion.deliveries import extract_group, scan_landing

    scan = scan_landing(landing, home)
    for name in scan.not_ready:
        log.info("waiting for the control file of %s", name)
    for name in scan.broken_links:
        log.warning("%s is a symbolic link to nothing", name)
    return sorted({extract_group(d.name) for d in scan.ready}), {
        "not_ready": scan.not_ready, "orphan_controls": scan.orphan_controls,
        "broken_links": scan.broken_links, "ignored": scan.ignored}


def ingest_group(paths: Paths, landing: Path, group: str, run_id: str) -> dict:
    from .pipeline import ingest_step
    from .warehouse import exclusive

    with exclusive(paths):
        report = ingest_step(paths, landing, run_id, log.info, extracts=[group])
    return {"group": group, "rows": report.rows, "already_processed": len(report.already_processed),
            "not_ready": report.not_ready, "orphan_controls": report.orphan_controls,
            "broken_links": report.broken_links, "ignored": report.ignored,
            "files": [file_outcome(f) for f in report.results]}


# What the ingest task's XCom keeps of each file: what the summary tells (delivery_notes)
FILE_OUTCOME = ("file_name", "status", "reason_code", "reason_detail", "rows_in_file", "rows_loaded",
                "rows_quarantined", "rows_duplicate", "mistyped_columns", "ahead", "quarantine_reasons", "superseded")


def file_outcome(result) -> dict:
    return {k: v for k, v in asdict(result).items() if k in FILE_OUTCOME}


def build(paths: Paths, year: int, as_of: dt.date, config: str | None, full_refresh: bool = False) -> dict:
    from .pipeline import build_step
    from .warehouse import exclusive

    m = load_methodology(paths, year, config)
    with exclusive(paths):
        result = build_step(paths, year, as_of, m, log.info, full_refresh)
    return {"seconds": round(result.seconds, 2), "models": result.count("model"), "data_tests": result.count("test"),
            "dbt_docs": str(result.docs), "rebuilt_because": result.rebuilt_because}


def gate(paths: Paths, run_id: str, year: int, config: str | None) -> dict:
    """Raises GateFailed (the task fails, with the check names) when a blocking check fails."""
    from .pipeline import gate_step
    from .quality.gate import GateFailed
    from .warehouse import exclusive

    m = load_methodology(paths, year, config)
    with exclusive(paths):
        result = gate_step(paths, run_id, m)
    summary = {"passed": result.passed, "checks": len(result.checks),
               "warnings": result.warning_lines(),
               "failed": [c.name for c in result.blocking_failures], "data_docs": result.data_docs,
               "report": result.report}
    if not result.passed:
        raise GateFailed(result)
    return summary


def publish(paths: Paths, run_id: str, year: int, as_of: dt.date, config: str | None) -> dict:
    from .pipeline import highlights, publish_step
    from .quality.gate import PUBLISHED_FIELDS, report_path
    from .warehouse import exclusive

    m = load_methodology(paths, year, config)
    report = json.loads(report_path(paths, run_id).read_text())
    if not report["passed"]:
        raise RuntimeError(f"the quality gate of run {run_id} did not pass; nothing to publish")
    checks = [{k: c[k] for k in PUBLISHED_FIELDS} for c in report["checks"]]
    with exclusive(paths):
        publication = publish_step(paths, run_id, year, as_of, m, checks, report.get("build"))
    made_latest = publication.plan.becomes_latest  # else the analysts' copy holds another run
    return {"folder": str(publication.folder), "latest": str(publication.latest),
            "latest_note": publication.plan.note(),
            "files": {f["file"]: f["rows"] for f in publication.manifest["files"]},
            "provinces": highlights(paths)["provinces"] if made_latest else [],
            "analysts_copy": [{"file": c.copy.name, "bytes": c.bytes_total, "bytes_written": c.bytes_written,
                               "in_place": c.patched_in_place, "direct_io": c.direct_io}
                              for c in publication.reader_copies],
            "analysts_line": publication.analysts_line}


def _file_status(status: str) -> str:
    """A ledger status in the summary's words, as `paritrana run` says it."""
    return {"SKIPPED_REDELIVERY": "skipped as re-delivered (the same bytes as a loaded file)",
            "SKIPPED_STALE": "skipped as stale (older than the version loaded)"}.get(status, status.lower())


def summarize(run_id: str, year: int, as_of: dt.date, ingested: list[dict] | None, built: dict | None,
              checked: dict | None, published: dict | None, task_states: dict[str, str] | None = None,
              extracts: list[str] | None = None, landing: dict[str, list[str]] | None = None,
              gate_report: dict | None = None, latest: str | None = None) -> str:
    """The run's summary (task log and DAG run note) from the tasks' XComs; `task_states`
    (task id, `ingest_<map index>` for the mapped ones, to state) names the tasks that failed,
    since a task that failed leaves no XCom to tell its story; `extracts` (find_deliveries'
    list, in map index order) names a mapped ingest by its extract, as the UI does; `landing`
    is find_deliveries' scan of what is not ready; `gate_report` the failed gate's
    HOME/reports/<run_id>/gate.json, whose failed checks the summary names; `latest` the
    year's latest publication (its run folder's name) when this run published nothing."""
    from .builds import rebuilt_line
    from .pipeline import delivery_notes, province_lines
    from .quality.gate import failed_check_line

    files: dict[str, int] = {}
    rows = {"in_file": 0, "loaded": 0, "quarantined": 0, "duplicate": 0}
    every_file, waiting, orphans, broken, ignored = [], set(), set(), set(), set()
    for group in [{"files": [], "rows": {}, **(landing or {})}, *(ingested or [])]:
        for f in group["files"]:
            files[f["status"]] = files.get(f["status"], 0) + 1
        every_file += group["files"]
        for k in rows:
            rows[k] += group["rows"].get(k, 0)
        # find_deliveries and every group scan the whole landing: what waits is the same in each
        waiting.update(group.get("not_ready", []))
        orphans.update(group.get("orphan_controls", []))
        broken.update(group.get("broken_links", []))
        ignored.update(group.get("ignored", []))
    # Airflow names a mapped task's instance `ingest_3`: shown as the UI shows it, `ingest[claims]`.
    def shown(task: str) -> str:
        return re.sub(r"_(\d+)$", lambda m: f"[{_nth(extracts, int(m[1]))}]", task)

    states = {shown(t): s for t, s in (task_states or {}).items()}
    stopped = {state: sorted(t for t, s in states.items() if s == state) for state in ("failed", "upstream_failed")}
    # a failed ingest task records nothing here: "no new files" would be a guess
    unknown = sum(t.startswith("ingest[") for t in stopped["failed"])
    lines = [f"Paritrana run {run_id}: year {year}, as of {as_of}",
             "files: " + (", ".join(f"{n} {_file_status(s)}" for s, n in sorted(files.items()))
                          or ("none recorded" if unknown else "no new files"))
             + (f", {len(ignored)} ignored (hidden or partial)" if ignored else "")
             + (f"; not counted: the {unknown} failed ingest task{'s' * (unknown > 1)}" if unknown else ""),
             f"rows: {rows['in_file']:,} read = {rows['loaded']:,} loaded + {rows['quarantined']:,} quarantined "
             f"+ {rows['duplicate']:,} duplicates"
             # where a newcomer finds them, as `paritrana run` says
             + ("; each quarantined row (file, line, reasons, masked content) is in raw.quarantine"
                if rows["quarantined"] else "")]
    lines += [f"{label} {name}: {text}" for label, name, text in
              delivery_notes(every_file, sorted(waiting), sorted(orphans), sorted(broken), sorted(ignored))]
    if stopped["failed"]:
        lines.append(f"failed: {', '.join(stopped['failed'])} (each task's log says why)"
                     + (f"; not run: {', '.join(stopped['upstream_failed'])}" if stopped["upstream_failed"] else ""))
    if built:
        lines.append(f"dbt: {built['models']} models, {built['data_tests']} data tests in {built['seconds']} s; "
                     f"docs {built['dbt_docs']}")
        if built.get("rebuilt_because"):  # .get: an XCom of a build before 0.3.14
            lines.append(rebuilt_line(built["rebuilt_because"]))
    if checked:
        lines.append(f"checks: {checked['checks']} run, {len(checked['warnings'])} warnings; {checked['data_docs']}")
        lines += checked["warnings"]  # each said as `paritrana run` says it, with the rows it is about
    elif states.get("quality_gate", "failed") == "failed" and gate_report and not gate_report.get("passed", True):
        failed = [c for c in gate_report["checks"] if not c["passed"] and c["severity"] == "blocking"]
        lines.append(f"checks: {len(gate_report['checks'])} run, {len(failed)} blocking failed; "
                     f"{gate_report.get('data_docs') or 'Data Docs'}")
        lines += [failed_check_line(c) for c in failed]
    elif states.get("quality_gate", "failed") == "failed":  # stopped before its verdict: busy, a machine fault
        lines.append("checks: the quality gate stopped before it judged the checks (its log says why)")
    else:
        lines.append("checks: the quality gate did not run")
    if published:
        lines.append(f"published: {published['folder']}")
        if published.get("latest_note"):
            lines.append(published["latest_note"])
        if published.get("analysts_line"):
            lines.append(published["analysts_line"])
        lines += province_lines(published["provinces"])
    else:
        lines.append(f"published: nothing; the latest publication of {year} stays {latest}" if latest
                     else f"published: nothing; {year} has no publication yet")
    return "\n".join(lines)


def latest_name(paths: Paths, year: int) -> str | None:
    """The run folder of the year's latest publication, if there is one."""
    from .publication import latest

    folder = latest(paths, year)
    return folder.name if folder else None


def gate_report(paths: Paths, run_id: str) -> dict | None:
    """The gate's report of this run, when its gate ran far enough to write one."""
    from .quality.gate import report_path

    try:
        return json.loads(report_path(paths, run_id).read_text())
    except (OSError, ValueError):
        return None


def _nth(extracts: list[str] | None, index: int) -> str | int:
    return extracts[index] if extracts and 0 <= index < len(extracts) else index


NOTE_LIMIT = 1000  # characters: Airflow's dag_run_note.content


def fit_note(text: str, limit: int = NOTE_LIMIT) -> str:
    """The summary as a run note within Airflow's limit: the per-file lines give way, last
    first, then the checks' warnings, then the failed checks' own, so the counts, the failed
    tasks and what was published stay."""
    from .pipeline import DELIVERY_NOTE_LABELS

    lines = text.splitlines()
    # delivery_notes' lines and the checks' (warnings, then failed ones)
    detail = re.compile(rf"({'|'.join(DELIVERY_NOTE_LABELS)}|warning|FAILED) ")
    details = sorted((i for i, line in enumerate(lines) if detail.match(line)),
                     # files' lines go first, then warnings, a failed check's line last
                     key=lambda i: (not lines[i].startswith("FAILED"), not lines[i].startswith("warning "), i))
    dropped: list[int] = []
    while len(text) > limit and details:
        dropped.append(details.pop())
        kept = [line for i, line in enumerate(lines) if i not in dropped]
        kept.insert(min(dropped), f"… {len(dropped)} more lines (files, checks) in the summary task's log")
        text = "\n".join(kept)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def set_run_note(dag_id: str, airflow_run_id: str, note: str) -> bool:
    """Best effort: the run summary as the DAG run's note. It takes Airflow's database,
    which a task has in-process (dag.test(): `dag-test`, the demo) and not under a
    scheduler, whose task API cannot write a note (Airflow 3.3)."""
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == airflow_run_id).one()
            run.note = fit_note(note)
        return True
    except Exception as e:  # noqa: BLE001 - a note is never worth failing a run
        if "Direct database access via the ORM is not allowed" in str(e):  # under a scheduler: expected
            log.info("the run summary is above and in this task's XCom `summary`: under a scheduler a task "
                     "cannot write its DAG run's note")
        else:
            log.warning("could not set the DAG run note: %s", e)
        return False
