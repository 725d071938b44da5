"""Ingestion benchmark: generate `national` at a scale (cached), then time the product's
ingestion against DuckDB's own plain load of the same files, in the same run.

    python bench/ingest_bench.py --scale 0.05 [--scale 0.2 ...] [--cache bench/.cache] [--repeat N]
    python bench/ingest_bench.py --landing bench/.cache/national-1.0-42-days1 --snapshot --repeat 3

Each measured step runs in a fresh child process, so peak RSS is that step's alone.
`--repeat N` alternates the plain load and ingestion N times and reports the pair with
the median ratio (every pair is kept in the JSON): on this machine one run can be 10-25 %
off the next, which moves a single ratio more than most changes do. `--landing` times an
existing folder (every file in it) instead of generating one; its files must be clean, as
the plain load stops at the first bad value. `--snapshot` times only its snapshot files
(hard-linked into a work folder): a landing generated with `--days` holds deltas whose
planted defects stop the plain load.
Writes bench/results/ingest-<scale or folder name>.json and prints a Markdown table, then
one per input with each file's seconds in every pair (`by_file` in the JSON).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
# one floor and one ingestion step, each measured one way: the step is pipeline_bench's
# `ingest` stage (the product's ingest_step, its connection settings included)
from pipeline_bench import (  # noqa: E402
    PLAIN, STAGE, YEAR, generate, host_speed, link_files, machine, measure, size_mb, speed_text, warm,
)


def generated(scale: float, cache: Path, seed: int) -> tuple[Path, float | None]:
    landing = cache / f"national-{scale}-{seed}"
    return landing, generate(landing, scale, seed)


def bench(label: str, landing: Path, cache: Path, repeat: int = 1) -> dict:
    work = cache / "work"
    runs = []
    speed = {"start": host_speed()}
    warm_s = warm(landing)  # the first plain load would otherwise read from disk what ingestion finds cached
    for _ in range(repeat):
        run = {}
        for name, args in (("plain", (PLAIN, str(work), str(landing))),
                           ("ingestion", (STAGE, "ingest", str(work), str(landing), "bench"))):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            run[name] = measure(*args)
            run[name]["disk_mb"] = size_mb(work)
        run["ratio_to_plain"] = round(run["ingestion"]["wall_s"] / run["plain"]["wall_s"], 2)
        runs.append(run)
    shutil.rmtree(work, ignore_errors=True)
    speed["end"] = host_speed()
    median = sorted(runs, key=lambda r: r["ratio_to_plain"])[len(runs) // 2]
    rows = {k: v for k, v in median["ingestion"]["extra"].items() if k != "files"}
    return {
        "label": label, "landing": str(landing), "input_mb": size_mb(landing), "warm_s": warm_s,
        "rows": rows, "ingestion": median["ingestion"], "plain": median["plain"],
        "ingestion_rows_per_s": round(rows["in_file"] / median["ingestion"]["wall_s"]),
        "ratio_to_plain": median["ratio_to_plain"], "ratios": [r["ratio_to_plain"] for r in runs],
        "by_file": by_file(runs), "runs": runs,
        "machine": machine(), "host_speed": speed,
    }


def by_file(runs: list[dict]) -> dict:
    """Each file's seconds in every pair, the product's (its load, from the ingestion report)
    and the plain load's (its `create table`), and the median of their ratios: where the
    product's time beyond the floor goes, file by file. Neither includes the process's
    start-up, which the totals do."""
    files = {}
    for name, plain in runs[0]["plain"]["extra"]["files"].items():
        if any(name not in r["ingestion"]["extra"]["files"] for r in runs):
            continue  # a file in a subfolder, named otherwise by each
        pairs = [(r["ingestion"]["extra"]["files"][name]["s"], r["plain"]["extra"]["files"][name]["s"]) for r in runs]
        ratios = sorted(round(i / p, 2) for i, p in pairs if p)
        files[name] = {"rows": plain["rows"], "ingestion_s": [i for i, _ in pairs], "plain_s": [p for _, p in pairs],
                       "ratio_median": ratios[len(ratios) // 2] if ratios else None}
    return files


def file_table(r: dict) -> str:
    lines = ["| file | rows | ingestion s | plain load s | ratio (median) |", "|---|---|---|---|---|"]
    for name, f in sorted(r["by_file"].items(), key=lambda item: -max(item[1]["plain_s"])):
        lines.append(f"| {name} | {f['rows']:,} | {', '.join(map(str, f['ingestion_s']))} | "
                     f"{', '.join(map(str, f['plain_s']))} | {f['ratio_median']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, action="append", default=[])
    ap.add_argument("--landing", type=Path, help="time this folder instead of a generated profile")
    ap.add_argument("--snapshot", action="store_true", help=f"with --landing: only its files of {YEAR}-12-31")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=1, help="alternate plain load and ingestion N times")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = ap.parse_args()
    if not args.scale and not args.landing:
        ap.error("give --scale (one or more) or --landing")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    print("| input | input MB | rows | ingestion s | rows/s | plain load s | ratio (median) | every ratio | "
          "peak RSS MB (ingest / plain) |")
    print("|---|---|---|---|---|---|---|---|---|")
    targets = [(str(scale), *generated(scale, args.cache, args.seed)) for scale in args.scale]
    if args.snapshot and not args.landing:
        ap.error("--snapshot goes with --landing")
    if args.landing and args.snapshot:
        snapshot = args.cache / "ingest-landing"
        shutil.rmtree(snapshot, ignore_errors=True)
        link_files(args.landing, snapshot, f"__{YEAR}-12-31")
        targets.append((f"{args.landing.name}-snapshot", snapshot, None))
    elif args.landing:
        targets.append((args.landing.name, args.landing, None))
    details = []
    for label, landing, t_gen in targets:
        r = {**bench(label, landing, args.cache, args.repeat), "seed": args.seed, "generate_s": t_gen}
        (out_dir / f"ingest-{label}.json").write_text(json.dumps(r, indent=1) + "\n")
        print(f"| {label} | {r['input_mb']} | {r['rows']['in_file']:,} | {r['ingestion']['wall_s']} | "
              f"{r['ingestion_rows_per_s']:,} | {r['plain']['wall_s']} | {r['ratio_to_plain']} | "
              f"{', '.join(map(str, r['ratios']))} | {r['ingestion']['peak_rss_mb']} / {r['plain']['peak_rss_mb']} |",
              flush=True)
        details.append(f"\n{label}, file by file (every pair):\n\n{file_table(r)}\n\n"
                       f"host speed: {speed_text(r['host_speed'])}")
    print("\n".join(details))
    if args.snapshot:
        shutil.rmtree(args.cache / "ingest-landing", ignore_errors=True)


if __name__ == "__main__":
    main()
