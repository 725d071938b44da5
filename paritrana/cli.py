"""`paritrana`: the command line (outputs.md §1). Parses arguments and calls the library."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from . import code_version
from .settings import resolve_home


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _progress(message: str) -> None:
    print(message, flush=True)


def cmd_generate(args) -> int:
    from .generator import generate

    t0 = time.perf_counter()
    manifest = generate(Path(args.landing), args.profile, args.year, args.scale, args.seed, args.days, _progress)
    rows = sum(f["rows"] for f in manifest["files"])
    print(f"wrote {len(manifest['files'])} deliveries ({rows:,} rows) into {args.landing} in "
          f"{time.perf_counter() - t0:.1f} s; planted defects: {len(manifest['defects'])} "
          f"(listed in {Path(args.landing) / '.generator.json'})")
    return 0


def cmd_run(args) -> int:
    from .pipeline import run, summary
    from .quality.gate import GateFailed

    try:
        result = run(resolve_home(args.home), Path(args.landing), args.year, args.as_of, _progress,
                     config_file=args.config, full_refresh=args.full_refresh)
    except GateFailed as e:
        print(summary(e.result))
        print(str(e), file=sys.stderr)
        return 2
    print(summary(result))
    return 0


def cmd_export(args) -> int:
    from .export import export_from, provenance

    out, folder = export_from(resolve_home(args.home), args.category, args.year, args.format, args.out, args.run,
                              args.table)
    # When the data went to the standard output (or a device, or a pipe), the note must not join it.
    print(f"wrote {out}: {provenance(folder, args.category, args.table)}",
          file=sys.stderr if args.out == "-" or not out.is_file() else sys.stdout)
    return 0


def cmd_explain(args) -> int:
    from .explain import changes, explain, render, versus

    paths = resolve_home(args.home)
    x = explain(paths, args.entity, args.year, args.run)
    # the same publication; refused (two categories) before anything is printed
    against = versus(x, explain(paths, args.versus, args.year, args.run)) if args.versus else []
    print(render(x))
    if against:
        print("\n".join(against))
    if args.since:  # by code: a name found here may fit others there
        print("\n".join(changes(x, explain(paths, x.entity["entity_code"], run_id=args.since))))
    return 0


def cmd_changes(args) -> int:
    from .ranking_changes import changes

    print("\n".join(changes(resolve_home(args.home), args.category, args.since, args.year, args.run, args.top)))
    return 0


def _dag_report(paths, landing, logical: dt.datetime, conf: dict) -> int:
    from .airflow_local import run_dag

    state, timings, note, elapsed, airflow_run_id = run_dag(paths, landing, logical, conf)
    print(f"\nDAG paritrana_nightly, run {airflow_run_id}: {state} in {elapsed:.1f} s")
    for task, (task_state, seconds) in timings.items():  # in the DAG's order
        print(f"  {task:<28} {task_state:<16} {seconds:6.1f} s")
    print("\n" + (note or "(no run summary)"))
    if state == "success":
        return 0
    # As `run` exits: 2 when the quality gate stopped publication, 1 for any other failure
    # (a gate task that failed before its verdict, on a busy warehouse say, included).
    from .orchestration import gate_report, safe_run_id

    report = gate_report(paths, safe_run_id(airflow_run_id)) or {}
    gate_failed = timings.get("quality_gate", ("",))[0] == "failed" and report.get("passed") is False
    return 2 if gate_failed else 1


def _print_outcome(paths, year: int, published_now: bool = True) -> None:
    from .pipeline import highlights
    from .publication import latest

    folder = latest(paths, year)
    if folder is None:
        return
    if not published_now:  # what follows is an earlier night's work, not this run's
        print(f"\nthis run published nothing; the latest publication of {year} stays {folder.name}:")
    tops = highlights(paths)["top"]
    for ranking, rows in tops.items():
        print(f"\ntop of rankings_{ranking}" + (" (BESAR)" if ranking == "badan_usaha" else ""))
        for rank, code, name, total in rows:
            print(f"  {rank:>3}. {code:<10} {name:<40} {total:>8}")
    print(f"\npublication: {folder}")
    print(f"Data Docs:   {paths.home / 'gx' / 'gx' / 'uncommitted' / 'data_docs' / 'local_site' / 'index.html'}")
    print(f"dbt docs:    {paths.home / 'docs' / 'dbt' / 'index.html'}")
    duckdb_cli = Path(sys.executable).parent / "duckdb"
    # a command to paste into a shell, whatever the paths hold
    print(f"analysts:    {shlex.quote(str(duckdb_cli))} -readonly {shlex.quote(str(paths.reader_copy))}")
    # the first entity of the top ranking, as an example an evaluator can run as it is
    top = next((rows[0][1] for rows in tops.values() if rows), None)
    if top is not None:
        paritrana = Path(sys.executable).parent / "paritrana"
        print(f"evaluators:  {shlex.quote(str(paritrana))} explain --entity {top} "
              f"--home {shlex.quote(str(paths.home))}")
        pair = next((rows[:2] for rows in tops.values() if len(rows) > 1), None)
        if pair:  # and why the first of a ranking is ahead of the second
            print(f"             {shlex.quote(str(paritrana))} explain --entity {pair[0][1]} --versus {pair[1][1]} "
                  f"--home {shlex.quote(str(paths.home))}")


def cmd_status(args) -> int:
    from .status import status

    print(status(resolve_home(args.home)))
    return 0


def cmd_demo(args) -> int:
    from .generator import generate

    t0 = time.perf_counter()
    paths = resolve_home(args.home)
    landing = paths.home / "landing" / "bengkulu-2024"
    if not (landing / ".generator.json").exists():
        # Three daily deltas bring the planted defects, so the summary shows quarantine at work.
        print(f"generating profile bengkulu-2024 (snapshot and 3 daily deltas) into {landing}")
        generate(landing, "bengkulu-2024", days_after=3, progress=_progress)
    # The night after the last delta (2025-01-03), as the final run for 2024.
    logical = dt.datetime(2025, 1, 4, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    print("running the Airflow DAG paritrana_nightly in-process (dag.test(), SQLite metadata, embedded DuckDB)")
    code = _dag_report(paths, landing, logical, {"year": 2024})
    _print_outcome(paths, 2024, published_now=code == 0)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return code


def cmd_dag_test(args) -> int:
    from .methodology import require_award_year

    if args.year is not None:  # before Airflow starts, as `run` does
        require_award_year(args.year)
    paths = resolve_home(args.home)
    logical = dt.datetime.combine(args.date, dt.time(1, 0), tzinfo=dt.timezone(dt.timedelta(hours=7)))
    conf = {"year": args.year, "full_refresh": args.full_refresh, "config": str(args.config) if args.config else None}
    code = _dag_report(paths, Path(args.landing).resolve(), logical, conf)
    if args.year:
        _print_outcome(paths, args.year, published_now=code == 0)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which for `run` means "the quality gate stopped
    publication" (outputs.md §1): a scheduler must not read a mistyped argument as a failed
    gate, so usage errors exit 1 like every other error. Subcommands inherit the class."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


# The commands that load files: a machine's stop leaves what they loaded loaded.
LOADING_COMMANDS = ("run", "dag-test")
# publication.RANKINGS, spelled here so that parsing arguments imports nothing heavy (a
# test holds them equal)
CATEGORIES = ("pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="paritrana", description="Paritrana Warehouse: ingest, build, validate, publish.")
    # the version (and commit) every manifest records as code_version: what a bug report starts with
    p.add_argument("--version", action="version", version=f"paritrana {code_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write synthetic deliveries (data + control files)",
                       description="Write realistic synthetic deliveries into a landing folder. "
                                   "Same arguments, same bytes.")
    g.add_argument("--landing", required=True, help="folder to write the deliveries into")
    g.add_argument("--profile", required=True, choices=["demo", "bengkulu-2024", "national"])
    g.add_argument("--year", type=int, help="assessment year (default: the profile's, 2024)")
    g.add_argument("--scale", type=float, default=1.0, help="size factor (default 1.0)")
    g.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    g.add_argument("--days", type=int, default=0,
                   help="daily delta deliveries after the snapshot, every planted defect on day 1; more days "
                        "extend the same history (--days N writes --days N+1's files without its last day)")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="one pipeline run without Airflow",
                       description="Ingest every ready delivery, build the warehouse, validate, publish. "
                                   "Exit 0 published, 2 quality gate failed (nothing published), 1 error.")
    r.add_argument("--landing", required=True)
    r.add_argument("--year", type=int, required=True)
    r.add_argument("--as-of", type=_date, help="as-of date (default: YEAR-12-31)")
    r.add_argument("--home", help="warehouse home (default $PARITRANA_HOME, else ./paritrana_home)")
    r.add_argument("--config", type=Path, help="methodology configuration YAML overriding the defaults "
                                               "(default: HOME/methodology-YEAR.yml if present)")
    r.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("export", help="write the latest published ranking of a category, or its indicator table",
                       description="Write the latest published ranking of a category (or of the publication "
                                   "--run), or with --table indicators the table it comes from, as CSV, Parquet "
                                   "or XLSX.")
    e.add_argument("--category", required=True, choices=CATEGORIES)
    e.add_argument("--year", type=int, required=True)
    e.add_argument("--format", required=True, choices=["csv", "parquet", "xlsx"])
    e.add_argument("--out", required=True, help="file or folder to write; - for the standard output")
    e.add_argument("--table", choices=["rankings", "indicators"], default="rankings",
                   help="rankings (the published file, default) or indicators: the table the ranking comes from, "
                        "each indicator's numerator and denominator, values and scores unrounded, in the "
                        "ranking's row order")
    e.add_argument("--run", metavar="RUN_ID", help="a publication of the year other than the latest "
                                                    "(a folder name under HOME/published/YEAR)")
    e.add_argument("--home")
    e.set_defaults(func=cmd_export)

    x = sub.add_parser("explain", help="one entity's ranking, number by number",
                       description="Explain one province, regency/city, business or micro enterprise of the latest "
                                   "publication (or of an earlier one, with --run): each indicator as numerator ÷ "
                                   "denominator, target, score and weight, the total, the ranks, or the facts behind "
                                   "an ineligibility.")
    x.add_argument("--entity", required=True, help="a region code (17, 17.71), an npp (BK000123), or a name or part "
                                                   "of one, in any case ('kota bengkulu')")
    x.add_argument("--year", type=int, help="the assessment year: its latest publication (default: the year "
                                            "published last)")
    x.add_argument("--run", metavar="RUN_ID", help="a publication other than the latest, such as the one an award "
                                                    "was announced on (a folder name under HOME/published/YEAR)")
    x.add_argument("--since", metavar="RUN_ID", help="another publication (of any year) to compare with: what moved "
                                                      "since, indicator by indicator, and the total and ranks")
    x.add_argument("--versus", metavar="ENTITY", help="another entity of the same category and publication: why "
                                                       "one ranks above the other, indicator by indicator")
    x.add_argument("--home")
    x.set_defaults(func=cmd_explain)

    c = sub.add_parser("changes", help="what moved in a ranking between two publications",
                       description="Compare a category's ranking with an earlier publication's: entities new and "
                                   "gone, who became eligible or not and why, who rose and fell most in the "
                                   "national rank, and whether the top is the same. Reads the publications' files.")
    c.add_argument("--category", required=True, choices=CATEGORIES)
    c.add_argument("--since", required=True, metavar="RUN_ID", help="the earlier publication (a folder name under "
                                                                     "HOME/published/YEAR)")
    c.add_argument("--year", type=int, help="compare the latest publication of this year (default: the year of "
                                            "--since)")
    c.add_argument("--run", metavar="RUN_ID", help="compare this publication instead of the latest")
    c.add_argument("--top", type=int, default=10, help="how many movers to list each way (default 10)")
    c.add_argument("--home")
    c.set_defaults(func=cmd_changes)

    s = sub.add_parser("status", help="what a home holds and what its next build will do",
                       description="The last build and the version that made it, whether the next build is "
                                   "incremental or full and why, the latest publication of each year, which build the "
                                   "analysts' copy holds, the run turn, and how current each daily extract is. Reads; "
                                   "never waits for a run.")
    s.add_argument("--home")
    s.set_defaults(func=cmd_status)

    d = sub.add_parser("demo", help="from nothing to published rankings on bengkulu-2024, through the real DAG",
                       description="Generate bengkulu-2024 and run the real Airflow DAG in-process on it "
                                   "(dag.test(), SQLite metadata, embedded DuckDB); print where everything is.")
    d.add_argument("--home")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("dag-test", help="one run of the nightly DAG in-process, without a scheduler",
                       description="Run dags/paritrana_nightly.py once with dag.test() for the night of DATE "
                                   "(01:00 Asia/Jakarta): as-of date is the day before.")
    t.add_argument("--landing", required=True)
    t.add_argument("--date", type=_date, required=True, help="the night to run (logical date), YYYY-MM-DD")
    t.add_argument("--year", type=int, help="final run for this year (as-of capped at YEAR-12-31)")
    t.add_argument("--config", type=Path)
    t.add_argument("--full-refresh", action="store_true")
    t.add_argument("--home")
    t.set_defaults(func=cmd_dag_test)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A log handler that cannot write (dbt's file log on a full disk) must not print a
    # traceback per message over the one error that says what happened.
    logging.raiseExceptions = False
    if os.environ.get("PARITRANA_DEBUG"):
        return args.func(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except BrokenPipeError:
        # The reader of the output went away (`| head`): stop quietly, as other tools do.
        # What is left in the old stream's buffer is never flushed (entry ends by os._exit).
        sys.stdout = open(os.devnull, "w")
        if args.command == "run":  # a run stopped half-way must still say so
            print("paritrana run: stopped, its output was closed by the reader; the same command finishes the job",
                  file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, PermissionError, OSError) as e:
        from .warehouse import machine_failure, machine_stop
        # a full disk, wherever it was met (errors that already say what to do carry no errno)
        if machine_failure(e):
            e = machine_stop(e, None, loading=args.command in LOADING_COMMANDS)
        print(f"paritrana {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a user sees a cause, not a traceback
        from ingestion.raw_schema import IncompatibleWarehouse
        from .transform import BuildFailed
        from .warehouse import (WarehouseBusy, damage_stop, damaged, held_elsewhere, held_elsewhere_stop,
                                interrupted, machine_failure, machine_stop)
        if interrupted(e):  # DuckDB reports Ctrl-C during a query as an error of its own
            return _interrupted(args.command)
        if machine_failure(e):
            e = machine_stop(e, None, loading=args.command in LOADING_COMMANDS)
        elif damaged(e):
            e = damage_stop(e, resolve_home(getattr(args, "home", None)).warehouse)
        elif held_elsewhere(e):  # GX's own connection, and the analysts' copy that explain opens
            e = held_elsewhere_stop(e, resolve_home(getattr(args, "home", None)))
        if isinstance(e, (WarehouseBusy, BuildFailed, IncompatibleWarehouse, OSError)):
            print(f"paritrana {args.command}: error: {e}", file=sys.stderr)
            return 1
        raise


def _interrupted(command: str) -> int:
    """Ctrl-C: exit 1 like any other stop (outputs.md §1 keeps 2 for a failed gate)."""
    after = (": what was loaded stays loaded (a file cut off mid-load is not kept), a publication is "
             "whole or not made, and the same command finishes the job") if command == "run" else ""
    print(f"\nparitrana {command}: interrupted{after}", file=sys.stderr)
    return 1


def entry() -> None:
    """The console script. Exits without interpreter finalisation: DuckDB's bindings print
    a page of harmless "nanobind: leaked ..." warnings at shutdown once GX and SQLAlchemy
    have held connections, which would bury the run summary."""
    code = main()
    # os._exit skips atexit, so multiprocessing's own exit step (private, but the one
    # `atexit` would call) is taken here: dbt's connection locks are named semaphores, and
    # the resource tracker would otherwise warn at the end of every run that they leaked.
    from multiprocessing import util
    util._exit_function()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
