"""The dbt project on PostgreSQL: the raw layer copied from a DuckDB warehouse, then
`dbt build --target postgres` with the pipeline's own variables, then the quality gate's
suites (expectations/*.yml) through Great Expectations on PostgreSQL.

Ingestion stays DuckDB's (it parses and validates the files in bulk there, and only the
raw layer leaves it); the models, their tests and the methodology run on either target.
tests/test_portability.py builds both from the same deliveries, a first build and a night
after it, and finds the marts equal.

    python -m paritrana.postgres_target --home HOME --year 2024 [--as-of D] [--config F] [--from FILE] [--no-gate]

The connection is the profile's (`dbt_project/profiles.yml`, target `postgres`):
$PARITRANA_PG_HOST, _PORT, _USER, _PASSWORD and _DB. Exit 0 built and every blocking check
passed, 2 a blocking check failed, 1 any other failure (dbt's own code when its build fails).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb

from ingestion.personal_data import token_text_sql

from . import code_version
from .builds import UNRECORDED_MODELS, models_changed, rebuilt_line
from .methodology import DBT_PROJECT_DIR
from .settings import resolve_home, utc_stamp
from .warehouse import DEFAULT_MEMORY_LIMIT, held_elsewhere, lock_holder

RAW = "raw"
PGOPTIONS = "-c work_mem=256MB"
ENV_DEFAULTS = {"PARITRANA_PG_HOST": "localhost", "PARITRANA_PG_PORT": "5432", "PARITRANA_PG_USER": "paritrana",
                "PARITRANA_PG_PASSWORD": "", "PARITRANA_PG_DB": "paritrana"}


def _pg_type(duckdb_type: str) -> str:
    t = duckdb_type.upper()
    if t.startswith("ENUM(") or t == "VARCHAR":  # closed sets are text to the models (macro closed_set)
        return "text"
    if t in ("HUGEINT", "UHUGEINT"):  # the NIK token's 128 bits
        return "numeric(39, 0)"
    if t.endswith("[]"):
        return _pg_type(t[:-2]) + "[]"
    return {"JSON": "jsonb", "DOUBLE": "double precision", "FLOAT": "real"}.get(t, t.lower())


def _as_text(column: str, duckdb_type: str) -> str:
    """The column as a COPY (CSV) field PostgreSQL reads back: a list becomes an array
    literal, each element double-quoted."""
    quoted = f'"{column}"'
    if duckdb_type.upper() == "UHUGEINT":
        return f"{token_text_sql(quoted)} as {quoted}"
    if not duckdb_type.endswith("[]"):
        return quoted
    element = """'"' || replace(replace(x, '\\', '\\\\'), '"', '\\"') || '"'"""
    return f"'{{' || array_to_string(list_transform({quoted}, lambda x: {element}), ',') || '}}' as {quoted}"


def connect_params() -> dict:
    env = {**ENV_DEFAULTS, **os.environ}
    return {"host": env["PARITRANA_PG_HOST"], "port": int(env["PARITRANA_PG_PORT"]), "user": env["PARITRANA_PG_USER"],
            "password": env["PARITRANA_PG_PASSWORD"], "dbname": env["PARITRANA_PG_DB"]}


def copy_raw(warehouse: Path, connection=None, progress=lambda _: None) -> dict[str, dict[str, int]]:
    """Makes PostgreSQL's raw schema hold what the DuckDB warehouse's does, in one
    transaction (a build sees the old layer or the new one). An extract table copies only
    the loads PostgreSQL lacks and deletes the ones DuckDB no longer has (superseded), so a
    night costs its delta; the ledger, the quarantine and the settings are copied whole, as
    is any table after a change of columns or of a load's file (another warehouse).
    Returns, per table, its rows and how many were copied. The warehouse is opened
    read-only: run it between runs, or on the analysts' copy."""
    import psycopg2

    pg = connection or psycopg2.connect(**connect_params())
    copied: dict[str, dict[str, int]] = {}
    try:
        # The product's memory limit, as for every DuckDB connection of a run: without it the
        # copy of a national raw layer held 6.2 GB.
        with duckdb.connect(str(warehouse), read_only=True, config={"memory_limit": DEFAULT_MEMORY_LIMIT}) as src, \
                tempfile.TemporaryDirectory() as tmp, pg.cursor() as cur:
            src.execute("set enable_progress_bar = false")  # each table's line says how far it is
            tables = [r[0] for r in src.execute(
                "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE' "
                "order by 1", [RAW]).fetchall()]
            cur.execute(f"create schema if not exists {RAW}")
            loads_now = _loaded(src.execute(f"select load_id, extract, data_sha256, status from {RAW}.load_ledger"))
            loads_before = {}
            if _has_table(cur, "load_ledger"):
                cur.execute(f"select load_id, extract, data_sha256, status from {RAW}.load_ledger")
                loads_before = _loaded(cur)
            # Load ids restart in a new warehouse: a load kept by id must be the same file.
            same_loads = all(loads_now[i] == loads_before[i] for i in loads_now.keys() & loads_before.keys())
            for table in tables:
                columns = src.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position", [RAW, table]).fetchall()
                wanted = [(name, _pg_type(t)) for name, t in columns]
                cur.execute("select column_name from information_schema.columns where table_schema = %s "
                            "and table_name = %s order by ordinal_position", (RAW, table))
                existing = [r[0] for r in cur.fetchall()]
                where = None
                if existing != [n for n, _ in wanted]:
                    # A new table, or one of an earlier version: its dependent staging views go
                    # with it, and the next dbt build makes them again.
                    cur.execute(f'drop table if exists {RAW}."{table}" cascade')
                    cur.execute(f'create table {RAW}."{table}" ('
                                + ", ".join(f'"{n}" {t}' for n, t in wanted) + ")")
                elif same_loads and "_load_id" in existing:
                    now = {i for i, (extract, _) in loads_now.items() if extract == table}
                    before = {i for i, (extract, _) in loads_before.items() if extract == table}
                    if before - now:
                        cur.execute(f'delete from {RAW}."{table}" where _load_id = any(%s)', (sorted(before - now),))
                    where = f"_load_id in ({', '.join(str(i) for i in sorted(now - before)) or 'null'})"
                else:
                    cur.execute(f'truncate {RAW}."{table}"')
                dump = Path(tmp) / f"{table}.csv"
                select = ", ".join(_as_text(n, t) for n, t in columns)
                target = str(dump).replace("'", "''")  # $TMPDIR may hold a quote
                src.execute(f"copy (select {select} from {RAW}.\"{table}\"{f' where {where}' if where else ''}) "
                            f"to '{target}' (format csv, header false)")
                with dump.open() as f:
                    cur.copy_expert(f'copy {RAW}."{table}" from stdin with (format csv)', f)
                    written = cur.rowcount
                dump.unlink()
                if written:
                    cur.execute(f'analyze {RAW}."{table}"')  # the build's plans need statistics at once
                copied[table] = {"rows": src.execute(f'select count(*) from {RAW}."{table}"').fetchone()[0],
                                 "copied": written}
                progress(f"  {table}: {written:,} rows copied")
        pg.commit()
    except BaseException:
        pg.rollback()
        raise
    finally:
        if connection is None:
            pg.close()
    return copied


def _has_table(cur, table: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (f"{RAW}.{table}",))
    return cur.fetchone()[0]


def _loaded(result) -> dict[int, tuple[str, str]]:
    """The loads whose rows the raw tables hold: load id to (extract, the file's sha256)."""
    return {load_id: (extract, sha) for load_id, extract, sha, status in result.fetchall() if status == "LOADED"}


# What built PostgreSQL's incremental models (builds.py keeps DuckDB's in the warehouse;
# PostgreSQL's raw.warehouse_settings is DuckDB's copy, so this lives beside the watermarks).
BUILT_BY = "intermediate.built_by_models"
# dbt's arguments that build part of the project: such a build does not make the whole its models'.
SELECTING = {"--select", "-s", "--models", "-m", "--exclude", "--selector"}


@contextlib.contextmanager
def _transaction():
    """A cursor in one committed transaction, on a connection closed after it."""
    import psycopg2

    pg = psycopg2.connect(**connect_params())
    try:
        with pg, pg.cursor() as cur:  # psycopg2: commits, or rolls back on an error; does not close
            yield cur
    finally:
        pg.close()


def rebuild_reason(cur, models: str) -> str | None:
    """Why a build by `models` must rebuild PostgreSQL's incremental models in full, or None,
    as builds.rebuild_reason for DuckDB. A version before 0.3.14 run after this one (a
    rollback) is not seen here: it leaves no mark on PostgreSQL."""
    cur.execute("select to_regclass('intermediate.incremental_watermarks') is not null, "
                f"to_regclass('{BUILT_BY}') is not null")
    built, recorded = cur.fetchone()
    if not recorded:
        return UNRECORDED_MODELS if built else None
    cur.execute(f"select models, code_version from {BUILT_BY}")
    row = cur.fetchone()
    if row and row[0] == models:
        return None
    return models_changed(row[1] if row else None)


def record_models(cur, models: str) -> None:
    cur.execute(f"create table if not exists {BUILT_BY} (models text, code_version text)")
    cur.execute(f"delete from {BUILT_BY}")
    cur.execute(f"insert into {BUILT_BY} values (%s, %s)", (models, code_version()))


def build(home: Path, year: int, as_of: dt.date, config: Path | None = None, full_refresh: bool = False,
          args: list[str] | None = None) -> subprocess.CompletedProcess:
    """`dbt build --target postgres` with the variables the pipeline passes to DuckDB's build.
    Its target/ and logs/ are HOME/dbt/postgres, apart from the DuckDB build's. The first
    build by other dbt models is full, as on DuckDB; the result's `rebuilt_because` says why."""
    from .methodology import load
    from .transform import dbt_env, dbt_vars, models_fingerprint

    methodology = load(config, home, year)
    models = models_fingerprint()
    with _transaction() as cur:
        rebuild = None if full_refresh else rebuild_reason(cur, models)
    out = home.resolve() / "dbt" / "postgres"  # dbt takes a relative --target-path from the project folder
    command = [sys.executable, "-c", "from dbt.cli.main import cli; cli()", "build", "--target", "postgres",
               "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
               "--target-path", str(out / "target"), "--log-path", str(out / "logs"), "--no-use-colors",
               "--no-send-anonymous-usage-stats", "--vars", json.dumps(dbt_vars(methodology))]
    command += (["--full-refresh"] if full_refresh or rebuild else []) + (args or [])
    # Session settings through libpq (the profile has no field for them): the joins of a
    # national build hash and sort far beyond PostgreSQL's 4 MB default, and spilled them to
    # disk, 9x slower at national 0.05 (docs/performance.md). $PGOPTIONS, when set, wins.
    # The build connects where copy_raw did: the profile's defaults are not consulted twice.
    env = {**ENV_DEFAULTS, **os.environ, "PGOPTIONS": os.environ.get("PGOPTIONS", PGOPTIONS), **dbt_env(year, as_of)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    done.rebuilt_because = rebuild
    # A build that failed, or one of selected nodes, records nothing: the next one is full again.
    if done.returncode == 0 and not SELECTING & set(args or []):
        with _transaction() as cur:
            record_models(cur, models)
    return done


def _database() -> str:
    where = connect_params()
    return f"{where['user']}@{where['host']}:{where['port']}/{where['dbname']}"


def gate_target(paths):
    """The quality gate's Target on PostgreSQL. GX's project is HOME/gx/postgres, beside the
    warehouse gate's HOME/gx, so that neither's stores and Data Docs hold the other's runs.
    GX writes its connection string into the project's configuration, so the string names no
    password: libpq reads it from $PGPASSWORD, which the gate sets from
    $PARITRANA_PG_PASSWORD while it runs (`validate`)."""
    from sqlalchemy.engine import URL

    from .quality.gate import Target

    where = connect_params()
    url = URL.create("postgresql+psycopg2", username=where["user"], host=where["host"], port=where["port"],
                     database=where["dbname"])
    options = os.environ.get("PGOPTIONS", PGOPTIONS)  # the aggregates group 45 M states, as the build does

    @contextlib.contextmanager
    def statements() -> Iterator:
        import psycopg2

        pg = psycopg2.connect(**where, options=options)
        # Each statement committed as it ends: the schema the first connection makes is
        # there at once for the other (the tables are the gate's scratch, dropped after).
        pg.autocommit = True
        try:
            with pg.cursor() as cur:
                yield cur.execute
        finally:
            pg.close()

    def release() -> None:
        # GX keeps an engine per data source, whose pool keeps its connections open; one
        # that last read schema _gate could hold the lock that dropping it then waits for.
        import gc

        import sqlalchemy

        for obj in gc.get_objects():
            if issubclass(type(obj), sqlalchemy.engine.Engine) and obj.url.drivername.startswith("postgresql"):
                obj.dispose()

    return Target("postgres", paths.home / "gx" / "postgres", url.render_as_string(hide_password=False),
                  {"connect_args": {"options": options}}, statements, lambda: None, release, connections=2)


def gate_run_id(now: dt.datetime | None = None) -> str:
    """postgres__20261207T041500Z: its report is HOME/reports/<run id>/gate.json, apart from
    the runs' (and Airflow's `scheduled__…`, `manual__…`)."""
    return "postgres__" + utc_stamp(now)


def validate(home: Path, year: int, config: Path | None = None, run_id: str | None = None):
    """The quality gate's suites, all of them, on what the last build made on PostgreSQL;
    the same checks as the warehouse's gate, with the same blocking and warning severities.
    Returns the gate (quality.gate.GateResult); raises nothing for failed checks."""
    from .methodology import load
    from .quality.gate import keep_gates, load_suites, run_gate
    from .transform import environment

    keep = keep_gates()  # a bad setting is refused before any work
    paths = resolve_home(home)
    methodology = load(config, paths.home, year)
    password = connect_params()["password"]
    with environment({"PGPASSWORD": password} if password else {}):
        return run_gate(gate_target(paths), paths, run_id or gate_run_id(), methodology, load_suites(), keep,
                        validated={"target": "postgres", "database": _database()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paritrana.postgres_target", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="default $PARITRANA_HOME, else ./paritrana_home")
    parser.add_argument("--year", type=int, required=True)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, help="default: YEAR-12-31")
    parser.add_argument("--config", type=Path, help="the methodology configuration, as for `paritrana run`")
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--no-gate", action="store_true",
                        help="build only: skip the quality gate's checks on PostgreSQL")
    parser.add_argument("--from", dest="source", type=Path,
                        help="the DuckDB file whose raw layer is copied; default HOME/analytics.duckdb, which matches "
                             "the latest publication and can be read while a run writes the warehouse")
    a = parser.parse_args(argv)

    paths = resolve_home(a.home)
    warehouse = a.source or paths.reader_copy
    if not warehouse.exists():
        parser.exit(1, f"{warehouse} does not exist: run `paritrana run` first, or name a file with --from\n")
    import psycopg2

    try:
        print(f"copying the raw layer of {warehouse} to PostgreSQL", flush=True)
        copied = copy_raw(warehouse, progress=lambda line: print(line, flush=True))
    except duckdb.IOException as e:
        if not held_elsewhere(e):
            raise
        holder = lock_holder(e)
        parser.exit(1, f"{warehouse} is open for writing in another process"
                       + (f" ({holder})" if holder else "")
                       + (": a run writing the warehouse? Copy from the analysts' copy, the default without --from, "
                          "or wait for it to end\n" if warehouse != paths.reader_copy else
                          ": a session that opened it without read-only? Close it, or open it read-only\n"))
    except psycopg2.OperationalError as e:
        parser.exit(1, f"cannot reach PostgreSQL as {_database()} "
                       f"($PARITRANA_PG_USER, _HOST, _PORT, _DB, _PASSWORD): {str(e).strip()}\n")
    print(f"raw layer copied from {warehouse}: " + ", ".join(
        f"{t} {c['rows']:,}" + (f" ({c['copied']:,} new)" if c["copied"] < c["rows"] else "") for t, c in copied.items()))
    print("building on PostgreSQL (dbt build --target postgres)", flush=True)
    done = build(paths.home, a.year, a.as_of or dt.date(a.year, 12, 31), a.config, a.full_refresh)
    print(done.stdout[-4000:], done.stderr[-2000:], sep="")
    if done.rebuilt_because:
        print(rebuilt_line(done.rebuilt_because))
    if done.returncode != 0 or a.no_gate:
        return done.returncode
    print("validating on PostgreSQL (the quality gate, expectations/*.yml)", flush=True)
    gate = validate(paths.home, a.year, a.config)
    return gate_outcome(gate)


def gate_outcome(gate) -> int:
    """Prints what the gate found, as `paritrana run` says it; 2 when a blocking check failed."""
    for line in gate.warning_lines():
        print("  " + line)
    if not gate.passed:
        print(gate.failure_message(f"what dbt built on PostgreSQL ({_database()}) did not pass"), file=sys.stderr)
        return 2
    print(f"quality gate passed on PostgreSQL ({_database()}): {len(gate.checks)} checks, "
          f"{len(gate.warnings)} warning(s); report {gate.report}" + (f"; Data Docs {gate.data_docs}" if gate.data_docs
                                                                     else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
