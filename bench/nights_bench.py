"""Night after night (issue 6: the nightly cost follows the delta, not the history).

    python bench/nights_bench.py [--scale 0.05] [--nights 7] [--keep-publications N]

Generates `national` at a scale with N daily deltas (cached), loads the snapshot, then
runs the pipeline once per night, each night's deliveries arriving on their own, stage by
stage in child processes as `pipeline_bench.py` does. A nightly cost that followed the
history would rise night after night; one that follows the delta stays flat. The home's
disk is recorded beside the input's after each night; --keep-publications runs with
PARITRANA_KEEP_PUBLICATIONS set. Writes bench/results/nights-<scale>[-keepN].json and
prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from pipeline_bench import (  # noqa: E402
    STAGES, YEAR, generate, host_speed, link_files, machine, run_stages, size_mb, speed_text, warm,
)


def night(home: Path, landing: Path, run_id: str, marker: str) -> dict:
    # The night's files were just linked from the cache and may be on disk only: read them
    # first, so that every night, and the initial load, starts from the page cache, as the
    # floor's runs in pipeline_bench do.
    warm_s = warm(landing, marker)
    stages = run_stages(home, landing, run_id)
    return {"warm_s": warm_s, "total_wall_s": stages["total_wall_s"],
            **{stage: stages[stage]["wall_s"] for stage in STAGES},
            "rows_loaded": stages["ingest"]["extra"]["loaded"], "peak_rss_mb": stages["peak_rss_mb"],
            "warehouse_mb": round((home / "warehouse.duckdb").stat().st_size / 2**20, 1),
            "home_mb": stages["publish"]["disk_mb"], "input_mb": size_mb(landing)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--nights", type=int, default=7)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    ap.add_argument("--keep-publications", type=int, default=None,
                    help="PARITRANA_KEEP_PUBLICATIONS for the runs (default: every publication kept)")
    args = ap.parse_args()
    if args.keep_publications is not None:
        os.environ["PARITRANA_KEEP_PUBLICATIONS"] = str(args.keep_publications)  # the stages' processes inherit it
    generated = args.cache / f"national-{args.scale}-{args.seed}-days{args.nights}"
    generate(generated, args.scale, args.seed, days=args.nights)
    work = args.cache / "nights-work"
    shutil.rmtree(work, ignore_errors=True)
    landing, home = work / "landing", work / "home"
    landing.mkdir(parents=True)
    snapshot = f"__{YEAR}-12-31"
    link_files(generated, landing, snapshot)
    speed = {"start": host_speed()}
    record = {"scale": args.scale, "seed": args.seed, "keep_publications": args.keep_publications, "nights": [],
              "initial": night(home, landing, "bench-initial", snapshot)}
    for n in range(1, args.nights + 1):
        day = f"__{YEAR + 1}-01-{n:02d}"
        link_files(generated, landing, day)
        record["nights"].append({"night": n, **night(home, landing, f"bench-night-{n}", day)})
    record["machine"] = machine()
    record["host_speed"] = {**speed, "end": host_speed()}
    shutil.rmtree(work, ignore_errors=True)
    keep = f"-keep{args.keep_publications}" if args.keep_publications is not None else ""
    out = ROOT / "bench" / "results" / f"nights-{args.scale}{keep}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    lines = ["| run | ingest s | dbt build s | validate s | publish s | total s | rows loaded | warehouse MB "
             "| home MB | input MB | home ÷ input |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in [("initial", record["initial"])] + [(f"night {n['night']}", n) for n in record["nights"]]:
        lines.append(f"| {name} | {r['ingest']} | {r['dbt_build']} | {r['validate']} | {r['publish']} | "
                     f"{r['total_wall_s']} | {r['rows_loaded']:,} | {r['warehouse_mb']} | {r['home_mb']} | "
                     f"{r['input_mb']} | {r['home_mb'] / r['input_mb']:.2f}× |")
    print("\n".join(lines + ["", f"host speed: {speed_text(record['host_speed'])}"]))


if __name__ == "__main__":
    main()
