"""One pipeline run without Airflow: the same steps the DAG wires together.

Today: ingest every ready delivery and report. The warehouse build, quality gate and
publication steps join here as they are built, so the CLI and the DAG stay one path.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ingestion.loader import IngestReport, ingest
from ingestion.personal_data import load_key

from .settings import Paths
from .warehouse import writer


@dataclass
class RunResult:
    run_id: str
    year: int
    as_of: dt.date
    ingest: IngestReport
    record: Path


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def run(paths: Paths, landing: Path, year: int, as_of: dt.date | None = None,
        progress: Callable[[str], None] = print, run_id: str | None = None) -> RunResult:
    as_of = as_of or dt.date(year, 12, 31)
    run_id = run_id or new_run_id()
    landing = Path(landing)
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist")
    key = load_key(paths.home)
    progress(f"run {run_id}: year {year}, as of {as_of}, landing {landing}, warehouse {paths.warehouse}")
    with writer(paths) as con:
        report = ingest(con, landing, key, run_id, progress)
    paths.runs.mkdir(parents=True, exist_ok=True)
    record = paths.runs / f"{run_id}.json"
    record.write_text(json.dumps({
        "run_id": run_id, "year": year, "as_of": as_of.isoformat(), "landing": str(landing),
        "files": [asdict(r) for r in report.results], "already_processed": report.already_processed,
        "not_ready": report.not_ready, "orphan_controls": report.orphan_controls, "ignored": report.ignored,
        "rows": report.rows,
    }, indent=1, default=str) + "\n")
    return RunResult(run_id, year, as_of, report, record)


def summary(result: RunResult) -> str:
    r = result.ingest
    rows = r.rows
    lines = [
        f"Run {result.run_id} (year {result.year}, as of {result.as_of})",
        f"  files: {r.count('LOADED')} loaded, {r.count('REJECTED')} rejected, "
        f"{r.count('SKIPPED_REDELIVERY') + r.count('SKIPPED_STALE')} skipped "
        f"({r.count('SKIPPED_REDELIVERY')} re-deliveries, {r.count('SKIPPED_STALE')} stale), "
        f"{len(r.already_processed)} already processed, {len(r.not_ready)} not ready (no control file)",
        f"  rows:  {rows['in_file']:,} read = {rows['loaded']:,} loaded + {rows['quarantined']:,} quarantined "
        f"+ {rows['duplicate']:,} exact duplicates dropped",
    ]
    for f in r.results:
        if f.status == "REJECTED":
            lines.append(f"  rejected {f.file_name}: {f.reason_code} ({f.reason_detail})")
    for name in r.not_ready:
        lines.append(f"  waiting  {name}: no control file yet")
    for name in r.orphan_controls:
        lines.append(f"  orphan   {name}: control file without its data file")
    lines.append(f"  ledger and quarantine: tables raw.load_ledger and raw.quarantine; run record {result.record}")
    return "\n".join(lines)
