"""Ingestion benchmark: generate `national` at a scale (cached), then time the product's
ingestion against DuckDB's own plain load of the same files, in the same run.

    python bench/ingest_bench.py --scale 0.05 [--scale 0.2 ...] [--cache bench/.cache]

Each measured step runs in a fresh child process, so peak RSS is that step's alone.
Writes bench/results/ingest-<scale>.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from pipeline_bench import PLAIN, measure, size_mb  # noqa: E402  (one floor, measured one way)

INGEST = """
import sys, json, resource
from pathlib import Path
from ingestion.loader import ingest
from paritrana.settings import resolve_home
from paritrana.warehouse import writer
with writer(resolve_home(sys.argv[1])) as con:
    r = ingest(con, Path(sys.argv[2]), b"bench-key", "bench")
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "extra": {"rows": r.rows}}))
"""


def bench(scale: float, cache: Path, seed: int) -> dict:
    landing = cache / f"national-{scale}-{seed}"
    t_gen = None
    if not (landing / ".generator.json").exists():
        shutil.rmtree(landing, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "paritrana.cli", "generate", "--landing", str(landing), "--profile",
                        "national", "--scale", str(scale), "--seed", str(seed)], check=True, cwd=ROOT)
        t_gen = round(time.perf_counter() - t0, 1)
    work = cache / "work"
    results = {}
    for name, script in (("plain_duckdb_load", PLAIN), ("ingestion", INGEST)):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        results[name] = measure(script, str(work), str(landing))
        results[name]["disk_mb"] = size_mb(work)
    rows = results["ingestion"]["extra"]["rows"]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "scale": scale, "seed": seed, "generate_s": t_gen, "input_mb": size_mb(landing),
        "rows": rows, "ingestion": results["ingestion"], "plain": results["plain_duckdb_load"],
        "ingestion_rows_per_s": round(rows["in_file"] / results["ingestion"]["wall_s"]),
        "ratio_to_plain": round(results["ingestion"]["wall_s"] / results["plain_duckdb_load"]["wall_s"], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, action="append", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    print("| scale | input MB | rows | ingestion s | rows/s | plain load s | ratio | peak RSS MB (ingest / plain) |")
    print("|---|---|---|---|---|---|---|---|")
    for scale in args.scale:
        r = bench(scale, args.cache, args.seed)
        (out_dir / f"ingest-{scale}.json").write_text(json.dumps(r, indent=1) + "\n")
        print(f"| {scale} | {r['input_mb']} | {r['rows']['in_file']:,} | {r['ingestion']['wall_s']} | "
              f"{r['ingestion_rows_per_s']:,} | {r['plain']['wall_s']} | {r['ratio_to_plain']} | "
              f"{r['ingestion']['peak_rss_mb']} / {r['plain']['peak_rss_mb']} |", flush=True)


if __name__ == "__main__":
    main()
