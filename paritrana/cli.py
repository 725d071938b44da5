"""`paritrana`: the command line (outputs.md §1). Parses arguments and calls the library."""
from __future__ import annotations

import argparse
import os
import datetime as dt
import sys
import time
from pathlib import Path

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
    from .export import export

    out = export(resolve_home(args.home), args.category, args.year, args.format, Path(args.out))
    print(f"wrote {out}")
    return 0


def cmd_demo(args) -> int:
    from .generator import generate
    from .pipeline import run, summary

    paths = resolve_home(args.home)
    landing = paths.home / "landing" / "bengkulu-2024"
    if not (landing / ".generator.json").exists():
        # Three daily deltas bring the planted defects, so the summary shows quarantine at work.
        print(f"generating profile bengkulu-2024 (snapshot and 3 daily deltas) into {landing}")
        generate(landing, "bengkulu-2024", days_after=3, progress=_progress)
    result = run(paths, landing, 2024, progress=_progress)
    print(summary(result))
    print(f"analysts: duckdb -readonly {paths.reader_copy}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paritrana", description="Paritrana Warehouse: ingest, build, validate, publish.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write synthetic deliveries (data + control files)",
                       description="Write realistic synthetic deliveries into a landing folder. "
                                   "Same arguments, same bytes.")
    g.add_argument("--landing", required=True, help="folder to write the deliveries into")
    g.add_argument("--profile", required=True, choices=["demo", "bengkulu-2024", "national"])
    g.add_argument("--year", type=int, help="assessment year (default: the profile's, 2024)")
    g.add_argument("--scale", type=float, default=1.0, help="size factor (default 1.0)")
    g.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    g.add_argument("--days", type=int, default=0, help="daily delta deliveries after the snapshot, with defects")
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

    e = sub.add_parser("export", help="write the latest published ranking of a category",
                       description="Write the latest published ranking of a category as CSV, Parquet or XLSX.")
    e.add_argument("--category", required=True, choices=["pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk"])
    e.add_argument("--year", type=int, required=True)
    e.add_argument("--format", required=True, choices=["csv", "parquet", "xlsx"])
    e.add_argument("--out", required=True, help="file to write")
    e.add_argument("--home")
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="from nothing to a loaded warehouse on the bengkulu-2024 profile")
    d.add_argument("--home")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get("PARITRANA_DEBUG"):
        return args.func(args)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError, OSError) as e:
        print(f"paritrana {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a user sees a cause, not a traceback
        from .transform import BuildFailed
        from .warehouse import WarehouseBusy
        if isinstance(e, (WarehouseBusy, BuildFailed)):
            print(f"paritrana {args.command}: error: {e}", file=sys.stderr)
            return 1
        raise


def entry() -> None:
    """The console script. Exits without interpreter finalisation: DuckDB's bindings print
    a page of harmless "nanobind: leaked ..." warnings at shutdown once GX and SQLAlchemy
    have held connections, which would bury the run summary."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
