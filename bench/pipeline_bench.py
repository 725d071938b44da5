"""Pipeline benchmark (issue 6): `national` at a given scale (cached), the pipeline stage by
stage (ingest, dbt build, validation, publish) for two workloads, beside two baselines
measured in the same run on the same files.

    python bench/pipeline_bench.py --scale 0.05 [--scale 0.2 ...] [--cache bench/.cache]

Workloads: `initial` loads the snapshot (the whole history) into an empty home;
`nightly` then adds one day of deltas (about 0.3% of participants touched, a day of
claims and payments) and runs again on the full warehouse.
Baselines: (a) DuckDB alone loading every snapshot file with plain read_csv/read_parquet
(the floor); (b) `bench/analyst_baseline.sql`, the indicators computed by one hand-written
DuckDB script straight from the files (what a skilled analyst would do without the product).
Every measured step runs in its own child process, which reports its own peak RSS.
Each record keeps the machine (`machine`) and how fast it ran at the run's start and end
(`host_speed`: memory, SHA-256 and a DuckDB write, about 9 s in all).
Writes bench/results/pipeline-<scale>.json and prints a Markdown table.
When a gate fails, the work folder (its home, with the warehouse, the gate's report and
the dbt log) is kept for diagnosis until the next run of this bench.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, which the measured steps (cwd=ROOT) run

from ingestion.deliveries import GENERATOR_MANIFEST  # noqa: E402
from paritrana.generator import REVISION  # noqa: E402

YEAR = 2024
STAGES = ("ingest", "dbt_build", "validate", "publish")

STAGE = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
from paritrana import methodology
from paritrana.pipeline import build_step, gate_step, ingest_step, publish_step
from paritrana.settings import resolve_home
from paritrana.warehouse import exclusive
stage, home, landing, run_id = sys.argv[1:5]
paths = resolve_home(home)
m = methodology.load()
as_of = dt.date(2024, 12, 31)
extra = {}


def failed_checks(gate):
    return [{**c.published(), "error": c.error} for c in gate.checks if not c.passed]


with exclusive(paths):
    if stage == "ingest":
        r = ingest_step(paths, Path(landing), run_id, progress=lambda s: None)
        # each file's seconds, beside the floor's (its `files`)
        extra = {**r.rows, "files": {f.file_name: {"rows": f.rows_in_file, "s": round(f.seconds, 3)}
                                     for f in r.results}}
    elif stage == "dbt_build":
        r = build_step(paths, 2024, as_of, m, progress=None)
        slowest = sorted(r.nodes, key=lambda n: -n.seconds)[:8]
        extra = {"dbt_s": round(r.seconds, 2), "models": r.count("model"), "tests": r.count("test"),
                 "slowest": [(n.name, round(n.seconds, 2)) for n in slowest]}
    elif stage == "validate":
        g = gate_step(paths, run_id, m)
        extra = {"passed": g.passed, "checks": len(g.checks), **g.seconds,
                 "by_suite_checks": {s: sum(1 for c in g.checks if c.suite == s) for s in ("raw", "marts")},
                 # a failed gate must be explainable from the record alone
                 "failed": failed_checks(g)}
        json.dump([c.published() for c in g.checks], open(Path(home) / "checks.json", "w"), default=str)
        json.dump(g.build, open(Path(home) / "validated_build.json", "w"))  # what publish may publish
    elif stage == "validate_raw" or stage == "validate_marts":
        from paritrana.quality.gate import validate
        g = validate(paths, run_id + "-" + stage, m, suite_names=[stage.split("_")[1]])
        # after a failed nightly gate, whether the same warehouse fails again tells a drift
        # in the data from a gate that erred once
        extra = {"checks": len(g.checks), **g.seconds, "passed": g.passed,
                 "failed": failed_checks(g)}
    elif stage == "publish":
        checks = json.load(open(Path(home) / "checks.json"))
        publish_step(paths, run_id, 2024, as_of, m, checks, json.load(open(Path(home) / "validated_build.json")))
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak_rss_mb": round(u.ru_maxrss / 1024), "extra": extra}, default=str))
"""

PLAIN = r"""
import sys, duckdb, resource, json, time
from pathlib import Path
landing = Path(sys.argv[2])
con = duckdb.connect(str(Path(sys.argv[1]) / "plain.duckdb"))
rows, files = 0, {}
for i, p in enumerate(sorted(landing.rglob("*"))):
    if p.name.endswith(".ctl.json") or p.name.startswith(".") or not p.is_file() or "resent" in p.parts:
        continue
    reader = f"read_parquet('{p}')" if p.suffix == ".parquet" else f"read_csv('{p}', header = true)"
    t0 = time.perf_counter()
    con.execute(f"create table t{i} as select * from {reader}")
    seconds = time.perf_counter() - t0
    n = con.execute(f"select count(*) from t{i}").fetchone()[0]
    rows += n
    files[p.name] = {"rows": n, "s": round(seconds, 3)}
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "extra": {"rows": rows, "files": files}}))
"""

ANALYST = r"""
import re, sys, duckdb, resource, json
from pathlib import Path
landing = Path(sys.argv[2])

# Every column typed as the contract says (sniffing guesses "17.01" as a number and a
# mostly empty column as text), as a careful analyst writes it.
from ingestion.contracts import EXTRACTS
from ingestion.rules import SQL_TYPES

def source(extract):
    files = [p for p in sorted(landing.rglob(extract + "__*")) if not p.name.endswith(".ctl.json")
             and "resent" not in p.parts]
    csvs = [str(p) for p in files if ".csv" in p.name]
    parquets = [str(p) for p in files if p.suffix == ".parquet"]
    parts = []
    if csvs:
        types = {c.name: SQL_TYPES[c.type] for c in EXTRACTS[extract].columns}
        parts.append(f"select * from read_csv({csvs}, union_by_name = true, filename = true, types = {types}, "
                     "ignore_errors = true)")  # bad rows vanish silently: what the product refuses to do
    if parquets:
        parts.append(f"select * from read_parquet({parquets}, union_by_name = true, filename = true)")
    return "(" + " union all by name ".join(parts) + ")"

sql = re.sub(r"\{src:(\w+)\}", lambda m: source(m.group(1)), Path(sys.argv[3]).read_text())
con = duckdb.connect()
con.execute("set enable_progress_bar = false")
out = {}
for statement in [s for s in sql.split(";") if s.strip()]:
    res = con.execute(statement)
rows = con.execute("select count(*) from pemda").fetchone()[0] + con.execute("select count(*) from employers_scored").fetchone()[0]
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "extra": {"rows": rows}}))
"""


def measure(script: str, *args: str) -> dict:
    t0 = time.perf_counter()
    c0 = os.times()
    # PARITRANA_CACHE=off: the initial load parses the dbt project in full, as a machine's
    # first home does, not from a parse an earlier home left in the user's cache.
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PARITRANA_CACHE": "off"})
    c1 = os.times()
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    # The report is the last line that is ours (DuckDB may draw progress bars on stdout).
    marker = '{"peak_rss_mb"'
    line = next(ln for ln in reversed(out.stdout.splitlines()) if marker in ln)
    report = json.loads(line[line.index(marker):])
    user, system = c1.children_user - c0.children_user, c1.children_system - c0.children_system
    # user and kernel time apart: where a slower host's time goes (docs/performance.md, session 49)
    return {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(user + system, 2),
            "user_s": round(user, 2), "system_s": round(system, 2), **report}


def size_mb(path: Path) -> float:
    """Bytes under path, each file once (analytics.duckdb is a hard link to a copy)."""
    files = {(st.st_dev, st.st_ino): st.st_size for st in (p.stat() for p in path.rglob("*") if p.is_file())}
    return round(sum(files.values()) / 2**20, 1)


def run_stages(home: Path, landing: Path, run_id: str) -> dict:
    """One pipeline run, stage by stage, each stage in its own process (as the DAG's tasks),
    with the home's disk after each; plus the total wall time and the peak RSS."""
    stages = {}
    for stage in STAGES:
        stages[stage] = measure(STAGE, stage, str(home), str(landing), run_id)
        stages[stage]["disk_mb"] = size_mb(home)
    stages["total_wall_s"] = round(sum(s["wall_s"] for s in stages.values()), 2)
    stages["peak_rss_mb"] = max(s["peak_rss_mb"] for s in stages.values() if isinstance(s, dict))
    return stages


def link_files(source: Path, target: Path, marker: str) -> None:
    for f in source.rglob("*"):
        if f.is_file() and marker in f.name and "resent" not in f.parts:
            dest = target / f.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.link(f, dest)


def generate(landing: Path, scale: float, seed: int, days: int = 0) -> float | None:
    """`national` at a scale into landing, unless already there (the cache) from this
    generator's revision; returns the seconds it took, or None when cached."""
    manifest = landing / GENERATOR_MANIFEST
    if manifest.exists() and json.loads(manifest.read_text()).get("revision") == REVISION:
        return None
    shutil.rmtree(landing, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paritrana.cli", "generate", "--landing", str(landing), "--profile",
                    "national", "--scale", str(scale), "--seed", str(seed), "--days", str(days)], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - t0, 1)


def bench(scale: float, cache: Path, seed: int, initial_only: bool = False) -> dict:
    generated = cache / f"national-{scale}-{seed}-days1"
    t_gen = generate(generated, scale, seed, days=1)
    work = cache / "pipeline-work"
    shutil.rmtree(work, ignore_errors=True)
    landing, home = work / "landing", work / "home"
    landing.mkdir(parents=True)
    link_files(generated, landing, f"__{YEAR}-12-31")
    snapshot_mb = size_mb(landing)
    record = {"scale": scale, "seed": seed, "generate_s": t_gen, "input_mb": snapshot_mb, "stages": {},
              "host_speed": {"start": host_speed()}}

    if not initial_only:
        record["baseline_analyst_sql_initial"] = measure(ANALYST, "", str(landing),
                                                         str(ROOT / "bench" / "analyst_baseline.sql"))
    # The floor is measured right before the initial load and again right after it: this
    # machine's speed drifts by up to a third within an hour (docs/performance.md), and the
    # two runs bracket the one being compared. The analyst's script (18 GB on a 24 GB machine)
    # can push the files out of the page cache: read them back first, or the floor before
    # pays disk reads that the initial load, run next, is spared (it was up to a third slower
    # than the floor after; with this, within 3 %: docs/performance.md, session 43).
    record["warm_s"] = warm(landing)
    record["baseline_plain_load"] = plain_load(work, landing)
    record["stages"]["initial"] = run_stages(home, landing, "bench-initial")
    record["baseline_plain_load_after"] = plain_load(work, landing)
    if initial_only:  # the largest scales: the pipeline's initial load against the floor only
        record["warehouse_mb"] = round((home / "warehouse.duckdb").stat().st_size / 2**20, 1)
        record["ratios"] = {**floor_ratios(record), "disk_to_input": round(size_mb(home) / snapshot_mb, 2)}
        record["machine"] = machine()
        record["host_speed"]["end"] = host_speed()
        clean_up(work, record)
        return record
    day = f"__{YEAR + 1}-01-01"
    link_files(generated, landing, day)
    record["nightly_delta_mb"] = round(size_mb(landing) - snapshot_mb, 1)
    record["warm_nightly_s"] = warm(landing, day)  # its files in the page cache too, as the snapshot's were
    record["stages"]["nightly"] = run_stages(home, landing, "bench-nightly")
    record["baseline_analyst_sql_full_history"] = measure(ANALYST, "", str(landing),
                                                          str(ROOT / "bench" / "analyst_baseline.sql"))
    # Validation by suite, on the full warehouse (issue 4's figure).
    for suite in ("validate_raw", "validate_marts"):
        record[suite] = measure(STAGE, suite, str(home), str(landing), "bench-suites")
    record["warehouse_mb"] = round((home / "warehouse.duckdb").stat().st_size / 2**20, 1)
    record["home_mb"] = size_mb(home)
    init, night = record["stages"]["initial"], record["stages"]["nightly"]
    record["ratios"] = {
        **floor_ratios(record),
        "initial_to_analyst_sql": round(init["total_wall_s"] / record["baseline_analyst_sql_initial"]["wall_s"], 2),
        "analyst_sql_full_history_to_nightly": round(
            record["baseline_analyst_sql_full_history"]["wall_s"] / night["total_wall_s"], 2),
        "disk_to_input": round(record["home_mb"] / snapshot_mb, 2),
    }
    record["machine"] = machine()
    record["host_speed"]["end"] = host_speed()
    clean_up(work, record)
    return record


def machine() -> dict:
    """What the figures came from. Sessions do not share a machine: the same files and code
    gave a floor of 37 s in one and 87 s in another (docs/performance.md), so the processor's
    model and family are kept with the memory and DuckDB's version, not the cores alone."""
    import duckdb

    record = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
              "duckdb": duckdb.__version__}
    cpu: dict[str, str] = {}
    with contextlib.suppress(OSError):  # not Linux: the fields above only
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            cpu.setdefault(name.strip(), value.strip())
        record["cpu"] = {"model_name": cpu.get("model name"), "family": cpu.get("cpu family"),
                         "model": cpu.get("model"), "sha_ni": "sha_ni" in cpu.get("flags", "").split()}
    with contextlib.suppress(OSError, StopIteration):
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
        record["memory_gb"] = round(mem_kb / 2**20, 1)
    return record


def host_speed() -> dict:
    """Three short probes of how fast this machine runs right now, taken at each benchmark's
    start and end: the same processor model gave a floor of 39 s one session and 65 s the next
    (docs/performance.md, session 49), and the product's ratio to it moved with it. Each is
    the best of a few tries, so a probe says what the machine could do, not its worst moment:
    - `memory_gb_s`: copying 256 MiB with NumPy (memory bandwidth, one core);
    - `sha256_mb_s`: hashlib's SHA-256 of 64 MiB (the processor alone, one core);
    - `duckdb_write_s`: DuckDB writing 10 M generated rows (a number, its text, a small
      code) into a new database file on both cores, the kind of work the floor does."""
    import hashlib
    import tempfile
    import timeit

    import duckdb
    import numpy as np

    def best(f, tries: int) -> float:
        return min(timeit.repeat(f, number=1, repeat=tries))

    def copy_time() -> float:
        source = np.ones(2**25, dtype=np.float64)  # 256 MiB
        target = np.empty_like(source)
        return best(lambda: np.copyto(target, source), 5)

    def sha_time() -> float:
        buffer = os.urandom(2**26)
        return best(lambda: hashlib.sha256(buffer).digest(), 3)

    memory, sha = copy_time(), sha_time()
    with tempfile.TemporaryDirectory() as folder:
        def write():
            path = Path(folder) / "probe.duckdb"
            with duckdb.connect(str(path), config={"threads": 2}) as con:
                con.execute("set enable_progress_bar = false")
                con.execute("create table t as select i, cast(i as varchar) as s, i % 97 as k "
                            "from range(10000000) r(i)")
            path.unlink()
        write_s = best(write, 2)
    return {"memory_gb_s": round(2**28 / memory / 1e9, 2), "sha256_mb_s": round(2**26 / sha / 1e6),
            "duckdb_write_s": round(write_s, 3)}


def speed_text(speed: dict) -> str:
    """host_speed's probes at a benchmark's start and end, in one line."""
    return "; ".join(f"{when}: memory {p['memory_gb_s']} GB/s, SHA-256 {p['sha256_mb_s']} MB/s, "
                     f"DuckDB write {p['duckdb_write_s']} s" for when, p in speed.items())


def warm(landing: Path, marker: str = "") -> float:
    """Read every file of landing (whose name holds `marker`) once, into the page cache;
    returns the seconds it took."""
    t0 = time.perf_counter()
    for f in sorted(landing.rglob("*")):
        if f.is_file() and marker in f.name:
            with f.open("rb", buffering=0) as stream:
                while stream.read(1 << 24):
                    pass
    return round(time.perf_counter() - t0, 2)


def plain_load(work: Path, landing: Path) -> dict:
    plain = work / "plain"
    plain.mkdir()
    result = measure(PLAIN, str(plain), str(landing))
    result["disk_mb"] = size_mb(plain)
    shutil.rmtree(plain)
    return result


def floor_ratios(record: dict) -> dict:
    """The initial load and its ingestion against the floor (a): the mean of the two
    bracketing runs, and each run alone (how far the machine drifted in between)."""
    init = record["stages"]["initial"]
    floors = [record["baseline_plain_load"]["wall_s"], record["baseline_plain_load_after"]["wall_s"]]
    floor = sum(floors) / len(floors)
    return {
        "initial_to_plain_load": round(init["total_wall_s"] / floor, 2),
        "initial_to_plain_load_before_after": [round(init["total_wall_s"] / f, 2) for f in floors],
        "ingest_to_plain_load": round(init["ingest"]["wall_s"] / floor, 2),
        "ingest_to_plain_load_before_after": [round(init["ingest"]["wall_s"] / f, 2) for f in floors],
        "ingest_to_plain_load_cpu": round(init["ingest"]["cpu_s"] / (
            (record["baseline_plain_load"]["cpu_s"] + record["baseline_plain_load_after"]["cpu_s"]) / 2), 2),
    }


def clean_up(work: Path, record: dict) -> None:
    """Remove the work folder, unless a gate failed: then its home is what explains the
    failure (the warehouse as the failed gate saw it, its report and the dbt log)."""
    failed = [w for w, s in record["stages"].items() if not s["validate"]["extra"].get("passed", True)]
    if failed:
        record["kept_for_diagnosis"] = str(work)
        print(f"gate failed ({', '.join(failed)}): {work} kept (the next run of this bench replaces it)", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


def markdown(r: dict) -> str:
    lines = [f"### national scale {r['scale']} (input {r['input_mb']} MB)", "",
             "| workload | ingest s | dbt build s | validate s | publish s | total s | peak RSS MB | disk MB |",
             "|---|---|---|---|---|---|---|---|"]
    for w, s in r["stages"].items():
        lines.append(f"| {w} | {s['ingest']['wall_s']} | {s['dbt_build']['wall_s']} | {s['validate']['wall_s']} | "
                     f"{s['publish']['wall_s']} | {s['total_wall_s']} | {s['peak_rss_mb']} | {s['publish']['disk_mb']} |")
    warmed = f" (files read into the page cache first in {r['warm_s']} s)" if "warm_s" in r else ""
    lines += ["", f"baselines: plain load {r['baseline_plain_load']['wall_s']} s before the initial load{warmed} and "
              f"{r['baseline_plain_load_after']['wall_s']} s after it "
              f"({r['baseline_plain_load']['peak_rss_mb']} MB); analyst SQL {r['baseline_analyst_sql_initial']['wall_s']} s "
              f"on the snapshot, {r['baseline_analyst_sql_full_history']['wall_s']} s with the delta; "
              f"validation raw {r['validate_raw']['wall_s']} s, marts {r['validate_marts']['wall_s']} s",
              f"ratios: {r['ratios']}"]
    if "host_speed" in r:
        lines.append(f"host speed: {speed_text(r['host_speed'])}")
    for w, s in r["stages"].items():
        gate = s["validate"]["extra"]
        if gate.get("failed"):  # records from before session 13 have no list
            lines.append(f"{w} gate ({'passed' if gate['passed'] else 'FAILED'}): {len(gate['failed'])} check(s) "
                         "did not pass: " + "; ".join(f"{c['severity']} {c['name']} observed {c['observed']!r}"
                                                      + (f" (error: {c['error']})" if c["error"] else "")
                                                      for c in gate["failed"]))
    for suite in ("validate_raw", "validate_marts"):
        again = r.get(suite, {}).get("extra", {})
        if again.get("failed"):  # records from before session 15 have no list
            lines.append(f"{suite} re-run on the final warehouse: " + "; ".join(
                f"{c['name']} observed {c['observed']!r}" for c in again["failed"]))
    if r.get("kept_for_diagnosis"):
        lines.append(f"work folder kept for diagnosis: {r['kept_for_diagnosis']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, action="append", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    ap.add_argument("--initial-only", action="store_true",
                    help="only the initial load against the plain-load floor (for scale 1.0 in limited time)")
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    for scale in args.scale:
        r = bench(scale, args.cache, args.seed, args.initial_only)
        name = f"pipeline-{scale}" + ("-initial" if args.initial_only else "")
        (out_dir / f"{name}.json").write_text(json.dumps(r, indent=1, default=str) + "\n")
        print(markdown(r) if not args.initial_only else json.dumps(r["stages"]["initial"], default=str), flush=True)


if __name__ == "__main__":
    main()
