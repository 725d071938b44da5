"""Quality gate against a year of stored nights (issue 6: the nightly follows the delta,
not the history).

    python bench/gate_history_bench.py [--nights 365] [--keep 30]

Builds a home from the `demo` profile with `paritrana run`, then gives GX's store the
results of N earlier nights (copies of the run's own, filed under earlier run times) and
times the gate in its own process, as the nightly DAG runs it: once with every night kept
in GX's store (what happened before PARITRANA_DATA_DOCS_RUNS), then with the default
bound, whose first gate moves the older nights to HOME/gx/archive.
Writes bench/results/gate-history.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from pipeline_bench import STAGE, host_speed, machine, measure  # noqa: E402

from paritrana.quality.gate import KEEP_GATES_ENV  # noqa: E402


def store_of(home: Path) -> Path:
    return home / "gx" / "gx" / "uncommitted" / "validations"


def add_past_nights(home: Path, nights: int) -> int:
    """GX files a result under <suite>/<run name>/<run time>/<batch>.json: one stored
    result per suite and batch is copied under `nights` earlier run names and times."""
    results = list({(r.parents[2], r.name): r for r in store_of(home).rglob("*.json")}.values())
    start = dt.datetime(2024, 1, 1, 2, 0)
    for result in results:
        for night in range(nights):
            when = (start + dt.timedelta(days=night)).strftime("%Y%m%dT%H%M%S.%fZ")
            folder = result.parents[2] / f"paritrana_night-{night:04d}" / when
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result, folder / result.name)
    return len(results) * nights


def gate(home: Path, landing: Path, run_id: str, keep: int) -> dict:
    os.environ[KEEP_GATES_ENV] = str(keep)
    r = measure(STAGE, "validate", str(home), str(landing), run_id)
    return {"wall_s": r["wall_s"], "gx_validate_and_docs_s": r["extra"]["validate"],
            "stored_results": sum(1 for _ in store_of(home).rglob("*.json"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--keep", type=int, default=30, help="the bound to measure (PARITRANA_DATA_DOCS_RUNS)")
    args = ap.parse_args()
    speed = {"start": host_speed()}
    work = Path(tempfile.mkdtemp(prefix="gate-history-"))
    try:
        landing, home = work / "landing", work / "home"
        for command in (["generate", "--landing", str(landing), "--profile", "demo"],
                        ["run", "--landing", str(landing), "--year", "2024", "--home", str(home)]):
            subprocess.run([sys.executable, "-m", "paritrana.cli", *command], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        record = {"nights": args.nights, "keep": args.keep,
                  "one_night_stored": gate(home, landing, "one-night", args.nights + 10)}
        record["past_results_added"] = add_past_nights(home, args.nights)
        unbounded = args.nights + 10  # larger than the history: nothing moves
        record["every_night_stored"] = [gate(home, landing, f"unbounded-{i}", unbounded) for i in (1, 2)]
        record["bounded"] = [gate(home, landing, f"bounded-{i}", args.keep) for i in (1, 2, 3)]
        record["archived_results"] = sum(1 for _ in (home / "gx" / "archive").rglob("*.json"))
        record["machine"] = machine()
        record["host_speed"] = {**speed, "end": host_speed()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results" / "gate-history.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
