"""The dbt project builds on PostgreSQL as it does on DuckDB (README, "Portable SQL"): the
same deliveries, a first build and a night after it, give equal marts on both targets, and
the quality gate's suites observe the same on both. PostgreSQL runs as a throwaway cluster
from the server binaries of the machine image."""
from __future__ import annotations

import glob
import json
import math
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

import duckdb
import pytest

from conftest import page_text, paritrana
from paritrana import code_version
from paritrana.methodology import DBT_PROJECT_DIR

MARTS = {"pemda_indicators": "entity_code", "badan_usaha_indicators": "entity_code",
         "umk_indicators": "entity_code", "rankings_pemda_provinsi": "entity_code",
         "rankings_pemda_kabkota": "entity_code", "rankings_badan_usaha": "entity_code",
         "rankings_umk": "entity_code", "referential_checks": "check_name"}


def _server_binaries() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)),
                                           None)
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster of its own on a free port, trust authentication, superuser
    `paritrana`; the profile's environment variables point at it."""
    binaries = _server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    # The server refuses to run as root: there it runs as the image's `postgres` user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and no `postgres` user to run the PostgreSQL server as")
    base = Path(tempfile.mkdtemp(prefix="paritrana-pg-"))
    if as_user:
        shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    data = base / "data"

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    run(str(binaries / "initdb"), "-D", str(data), "-U", "paritrana", "--auth=trust", "--no-sync")
    run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-o",
        f"-p {port} -k {base} -c listen_addresses=localhost -c fsync=off", "start")
    env = {"PARITRANA_PG_HOST": "localhost", "PARITRANA_PG_PORT": str(port), "PARITRANA_PG_USER": "paritrana",
           "PARITRANA_PG_PASSWORD": "", "PARITRANA_PG_DB": "postgres"}
    try:
        with pytest.MonkeyPatch.context() as environment:  # for this module's tests; as it was after them
            for name, value in env.items():
                environment.setenv(name, value)
            yield env
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _pg(query: str, rows: bool = True) -> tuple[list[str], list[tuple]] | None:
    """Column names and rows of a query on the test's cluster (rows=False: a statement, committed)."""
    import psycopg2

    from paritrana.postgres_target import connect_params

    with psycopg2.connect(**connect_params()) as pg, pg.cursor() as cur:
        cur.execute(query)
        return ([d[0] for d in cur.description], cur.fetchall()) if rows else None


def _pg_build(home: Path):
    import datetime as dt

    from paritrana.postgres_target import build

    done = build(home, 2024, dt.date(2024, 12, 31))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done


def _by_key(columns: list[str], rows: list[tuple], key: str) -> list[tuple]:
    """Sorted in Python: PostgreSQL's text collation need not order codes as DuckDB does."""
    return sorted(rows, key=lambda row: row[columns.index(key)])


def _differences(duck: list[tuple], pg: list[tuple]) -> list[str]:
    if len(duck) != len(pg):
        return [f"{len(duck)} rows on DuckDB, {len(pg)} on PostgreSQL"]
    found = []
    for a, b in zip(duck, pg):
        for i, (x, y) in enumerate(zip(a, b)):
            floats = isinstance(x, float) and isinstance(y, float)
            if not (math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12) if floats else x == y):
                found.append(f"row {a[:4]} column {i}: {x!r} on DuckDB, {y!r} on PostgreSQL")
    return found


def _compare_marts(warehouse: Path) -> dict[str, int]:
    counts = {}
    with duckdb.connect(str(warehouse), read_only=True) as duck:
        for table, key in MARTS.items():
            query = f"select * from marts.{table}"
            result = duck.execute(query)
            duck_rows = _by_key([d[0] for d in result.description], result.fetchall(), key)
            differences = _differences(duck_rows, _by_key(*_pg(query), key))
            assert not differences, f"marts.{table}: " + "; ".join(differences[:5])
            counts[table] = len(duck_rows)
    return counts


def _pg_counts(tables) -> dict[str, int]:
    return {t: _pg(f'select count(*) from raw."{t}"')[1][0][0] for t in tables}


def _comparable(observed):
    """A check's observation, with the failing rows it names (the first five GX meets) in a
    canonical order. Which rows GX meets first follows each engine's table order, so where
    more rows fail than are named only their count is compared."""
    if not (isinstance(observed, dict) and "rows" in observed):
        return observed
    named = sorted(json.dumps(row, sort_keys=True) for row in observed["rows"])
    every_row = observed["unexpected_count"] <= len(named)
    return {**observed, "rows": named if every_row else len(named),
            "sample": sorted(observed["sample"], key=repr) if every_row else len(observed["sample"])}


def _gate_checks(report: Path) -> dict[str, tuple]:
    return {c["name"]: (c["severity"], c["passed"], _comparable(c["observed"]))
            for c in json.loads(report.read_text())["checks"]}


def _same_checks_as_duckdbs(home: Path, pg_report: Path) -> dict[str, tuple]:
    """The PostgreSQL gate's checks equal those of the latest gate on the DuckDB warehouse:
    the same names and severities, the same outcome and the same observed value (the rows
    named as `_comparable` says)."""
    runs = sorted((r for r in (home / "reports").glob("*/gate.json") if not r.parent.name.startswith("postgres__")),
                  key=lambda r: r.stat().st_mtime)
    duck, pg = _gate_checks(runs[-1]), _gate_checks(pg_report)
    assert len(pg) > 50 and pg == duck, {n: (duck.get(n), c) for n, c in pg.items() if duck.get(n) != c}
    return pg


def _build_on_postgres(home: Path) -> dict:
    import datetime as dt

    from paritrana.postgres_target import build, copy_raw, validate

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as duck:
        tables = [t for (t,) in duck.execute("select table_name from duckdb_tables() where schema_name = 'raw'").fetchall()]
        exact = {t: duck.execute(f'select count(*) from raw."{t}"').fetchone()[0] for t in tables}
    copied = copy_raw(home / "warehouse.duckdb")
    assert {t: c["rows"] for t, c in copied.items()} == exact == _pg_counts(exact)  # every raw row, every table
    done = build(home, 2024, dt.date(2024, 12, 31))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.rebuilt_because is None  # a first build: nothing was built by other models
    assert "PASS=" in done.stdout and "ERROR=0" in done.stdout  # models, data tests and unit tests
    gate = validate(home, 2024)
    assert gate.passed and gate.build["target"] == "postgres"
    _same_checks_as_duckdbs(home, Path(gate.report))
    assert (home / "gx" / "postgres" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()
    assert _pg("select count(*) from information_schema.schemata where schema_name = '_gate'")[1] == [(0,)]
    return copied


def test_the_marts_on_postgresql_equal_duckdbs_first_build_and_night(demo, tmp_path, postgres):
    first = tmp_path / "first-night"
    first.mkdir()
    with duckdb.connect(str(demo.paths.warehouse), read_only=True) as duck:
        corrected = {f for (f,) in duck.execute("select file_name from raw.load_ledger where status = 'SUPERSEDED'")
                     .fetchall()}
    assert corrected
    for f in demo.landing.iterdir():  # the snapshot and the references, and a file corrected on the next night
        if f.is_file() and ("__2024-12-31." in f.name or f.name.removesuffix(".ctl.json") in corrected):
            shutil.copy2(f, first / f.name)
    home = tmp_path / "home"
    run = paritrana("run", "--landing", str(first), "--home", str(home), "--year", "2024")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    copied = _build_on_postgres(home)
    assert all(c["copied"] == c["rows"] for c in copied.values())  # a first copy is whole
    # the 128-bit NIK token arrives digit for digit (written by parts, DuckDB's own cast being slow)
    token = "select kpj, _line, cast(nik_token as varchar) from raw.participants where nik_token is not null"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as duck:
        tokens = sorted(duck.execute(token).fetchall())
    assert len(tokens) > 1000 and sorted(_pg(token.replace("varchar", "text"))[1]) == tokens
    assert any(len(t) == 39 for _, _, t in tokens)  # a token above 10^38: all three parts used
    counts = _compare_marts(home / "warehouse.duckdb")
    assert counts["rankings_umk"] > 100 and counts["pemda_indicators"] > 10
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as duck:
        before = duck.execute("select * from marts.pemda_indicators order by entity_code").fetchall()

    # The next night: corrections, a late file, re-versioned claims. PostgreSQL's build is
    # incremental, as DuckDB's is: only the keys the new loads touched are recomputed.
    run = paritrana("run", "--landing", str(demo.landing), "--home", str(home), "--year", "2024")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as duck:
        assert duck.execute("select * from marts.pemda_indicators order by entity_code").fetchall() != before
    seen = _watermark()
    # as a data engineer runs it, from the analysts' copy (which matches the publication)
    cli = subprocess.run([sys.executable, "-m", "paritrana.postgres_target", "--home", "home", "--year", "2024"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert cli.returncode == 0, cli.stdout[-4000:] + cli.stderr[-2000:]
    assert f"raw layer copied from {home / 'analytics.duckdb'}: claims " in cli.stdout
    assert "\n  participants: " in cli.stdout  # its progress, a line per table
    assert "ERROR=0" in cli.stdout
    passed = re.search(r"\nquality gate passed on PostgreSQL \(paritrana@localhost:\d+/postgres\): (\d+) checks, "
                       r"0 warning\(s\); report (\S+/reports/postgres__\d{8}T\d{6}Z/gate\.json);", cli.stdout)
    assert passed, cli.stdout[-2000:]
    assert len(_same_checks_as_duckdbs(home, Path(passed[2]))) == int(passed[1])
    # only the night's loads are copied (a night costs its delta); a superseded load's rows go
    assert re.search(r"participants [\d,]+ \([\d,]+ new\)", cli.stdout), cli.stdout[:1000]
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as duck:
        superseded = duck.execute("select count(*) from raw.load_ledger where status = 'SUPERSEDED' "
                                  "and file_name in (select unnest(?))", [sorted(corrected)]).fetchone()[0]
        exact = {t: duck.execute(f'select count(*) from raw."{t}"').fetchone()[0]
                 for (t,) in duck.execute("select table_name from duckdb_tables() where schema_name = 'raw'").fetchall()}
    assert superseded >= 1  # a first night's file corrected on the second: its rows left PostgreSQL too
    del exact["warehouse_settings"]  # the build clears its `last_build` stamp there (state_changes.sql)
    assert _pg_counts(exact) == exact
    # dbt's files in the home, also from a relative --home: never in the checkout's dbt project
    assert (home / "dbt" / "postgres" / "target" / "manifest.json").exists()
    assert not (DBT_PROJECT_DIR / "home").exists()
    assert _watermark() > seen  # the night's loads, picked up by the incremental models
    _compare_marts(home / "warehouse.duckdb")

    # After an upgrade that changed the dbt models, the first build is full, as on DuckDB: a
    # claim row that no load touches (as an old model's row would be) does not survive it
    planted = "select count(*) from intermediate.int_claims_current where claim_id = 'PLANTED'"
    _pg("create temporary table one as select * from intermediate.int_claims_current limit 1; "
        "update one set claim_id = 'PLANTED'; insert into intermediate.int_claims_current select * from one; "
        "update intermediate.built_by_models set models = 'other', code_version = '0.3.14+0123456789ab'", rows=False)
    assert _pg(planted)[1] == [(1,)]
    upgraded = _pg_build(home)
    assert upgraded.rebuilt_because == "its dbt models changed since its last build (by 0.3.14+0123456789ab; " \
        f"now {code_version()})"
    assert _pg(planted)[1] == [(0,)]
    assert _pg_build(home).rebuilt_because is None
    _compare_marts(home / "warehouse.duckdb")

    # --from the working file while a run writes it: the product's message, not DuckDB's
    with duckdb.connect(str(home / "warehouse.duckdb")):
        busy = subprocess.run([sys.executable, "-m", "paritrana.postgres_target", "--home", "home", "--year", "2024",
                               "--from", "home/warehouse.duckdb"], capture_output=True, text=True, timeout=600,
                              cwd=tmp_path)
    assert busy.returncode == 1 and "Traceback" not in busy.stderr, busy.stderr
    assert re.search(rf"home/warehouse\.duckdb is open for writing in another process \(.+, PID {os.getpid()}\): "
                     r"a run writing the warehouse\? Copy from the analysts' copy", busy.stderr), busy.stderr

    # The gate on PostgreSQL sees what its build cannot: a copy that lost a row (deleted here
    # behind the product's back; a night copies only the loads PostgreSQL lacks, so the row
    # stays lost). It signs in with a password, as a role PostgreSQL asks one of, and writes
    # the password nowhere (GX keeps its connection string in the home).
    hba = Path(_pg("show hba_file")[1][0][0])
    hba.write_text("".join(f"host all gatekeeper {net} scram-sha-256\n" for net in ("127.0.0.1/32", "::1/128"))
                   + hba.read_text())
    _pg("create role gatekeeper superuser login password 'p@ss:w/rd'; select pg_reload_conf()", rows=False)
    lost = _pg("select file_name from raw.load_ledger where load_id = (select min(_load_id) from raw.claims)")[1][0][0]
    _pg("delete from raw.claims where (_load_id, _line) = "
        "(select _load_id, _line from raw.claims order by _load_id, _line limit 1)", rows=False)
    signed_in = {**os.environ, "PARITRANA_PG_USER": "gatekeeper", "PARITRANA_PG_PASSWORD": "p@ss:w/rd"}
    command = [sys.executable, "-m", "paritrana.postgres_target", "--home", "home", "--year", "2024"]
    built_only = subprocess.run([*command, "--no-gate"], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                                env=signed_in)
    assert built_only.returncode == 0 and "ERROR=0" in built_only.stdout, built_only.stderr[-2000:]
    assert "quality gate" not in built_only.stdout + built_only.stderr  # --no-gate: the build, and no checks
    failed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=signed_in)
    assert failed.returncode == 2, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "ERROR=0" in failed.stdout  # dbt's build and tests pass: only the gate sees it
    assert "quality gate failed: 1 blocking check(s); what dbt built on PostgreSQL (gatekeeper@localhost:" \
        f"{postgres['PARITRANA_PG_PORT']}/postgres) did not pass\n  FAILED raw.raw_rows_match_ledger." \
        f"expect_column_values_to_be_between(rows_missing) on file_name={lost} (rows_missing 1)" in failed.stderr, \
        failed.stderr
    assert "/gx/postgres/gx/uncommitted/data_docs/local_site/index.html" in failed.stderr
    pages = home / "gx" / "postgres" / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations"
    page = max((pages / "raw" / "raw_rows_match_ledger").rglob("*.html"), key=lambda f: f.stat().st_mtime)
    text = page_text(page)
    assert f"Unexpected Value Count file_name 1 1 {lost} " in text, text[-2000:]  # the file, on its check's page
    written = [quote.encode() for quote in ("p@ss:w/rd", urllib.parse.quote("p@ss:w/rd", safe=""))]  # as in a URL
    assert not [f for f in home.rglob("*") if f.is_file() and any(w in f.read_bytes() for w in written)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                             env={**signed_in, "PARITRANA_PG_PASSWORD": "wrong"})
    assert refused.returncode == 1 and 'password authentication failed for user "gatekeeper"' in refused.stderr, \
        refused.stderr[-2000:]


def _watermark() -> int:
    """The highest load id PostgreSQL's incremental models have seen (incremental_state.sql)."""
    return _pg("select max(max_load_id) from intermediate.incremental_watermarks")[1][0][0]
