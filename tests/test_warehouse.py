"""The dbt warehouse (issue 3): the published figures, dbt unit tests, configuration,
incremental runs equal to a full refresh."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil

import duckdb
import pytest
import yaml

from paritrana import methodology
from paritrana.pipeline import build_step, ingest_step
from paritrana.settings import resolve_home
from paritrana.transform import _invoke, dbt_env
from ingestion.rules import sql_str

from conftest import PARTICIPANT_HEADER, csv_text, paritrana, participant, write_delivery


def test_run_reports_bengkulu_figures(bengkulu):
    """outputs.md: exactly 15,908 paid claims, Rp205.7 billion, 429 children, Rp1.68 billion."""
    assert ("Provinsi Bengkulu (17), 2024: 15,908 paid claims, Rp205,700,000,000; "
            "429 scholarship children, Rp1,680,000,000") in bengkulu.result.stdout
    con = duckdb.connect(str(bengkulu.paths.reader_copy), read_only=True)
    row = con.execute("select claims_paid_count, claims_paid_idr, scholarship_children, scholarship_idr "
                      "from marts.rankings_pemda_provinsi where entity_code = '17'").fetchone()
    kab = con.execute("select sum(claims_paid_count), count(*) from marts.rankings_pemda_kabkota").fetchone()
    assert row == (15_908, 205_700_000_000, 429, 1_680_000_000)
    assert kab == (15_908, 10)


def test_analysts_read_each_marts_description_beside_its_data(bengkulu):
    """An analyst in the DuckDB shell finds what each published table and column means in
    the catalog (duckdb_tables/duckdb_views/duckdb_columns), as the model's YAML says it."""
    described = {}
    for path in sorted((methodology.DBT_PROJECT_DIR / "models" / "marts").glob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            described[model["name"]] = model
    assert set(described) == {p.stem for p in (methodology.DBT_PROJECT_DIR / "models" / "marts").glob("*.sql")}
    with duckdb.connect(str(bengkulu.paths.reader_copy), read_only=True) as con:
        relations = dict(con.execute("select table_name, comment from duckdb_tables() where schema_name = 'marts' "
                                     "union all select view_name, comment from duckdb_views() "
                                     "where schema_name = 'marts'").fetchall())
        columns = {(t, c): comment for t, c, comment in con.execute(
            "select table_name, column_name, comment from duckdb_columns() where schema_name = 'marts'").fetchall()}
    for name, model in described.items():
        assert relations[name] == model["description"], name
        for column in model.get("columns", []):
            assert columns[(name, column["name"])] == column["description"], (name, column["name"])


def test_dbt_unit_tests_pin_the_formulas(bengkulu):
    """Every `unit_tests:` of the project runs and passes (they also fail: see the YAML).
    Their vars win over the run's year and as-of date, as `paritrana` sets them: the
    provisional run's unit test, as of 2024-06-30, fails when the environment's 12-31 wins."""
    res = _invoke(bengkulu.paths, ["test", "--select", "test_type:unit"], dbt_env(2024, dt.date(2024, 12, 31)))
    names = [r.node.name for r in res.result.results]
    assert res.success, [(r.node.name, r.status, r.message) for r in res.result.results if str(r.status) != "pass"]
    assert len(names) >= 15
    for expected in ("claim_re_versions", "umk_overrides_ump", "business_eligibility_reasons_in_order",
                     "business_scores_caps_and_tie_breaking", "pemda_territory_funding_and_references",
                     "bills_paid_late_after_as_of_partially_and_prior_year",
                     "participant_outdated_rows_equal_effective_dates", "delivery_freshness_days_behind_as_of",
                     "stg_regions_the_latest_delivery_is_the_reference"):
        assert expected in names


def test_data_tests_ran_on_the_marts(bengkulu):
    """Keys unique, scores in [0, 100], values non-negative, ranks 1..n, eligible ranked once."""
    dbt_count = int(bengkulu.result.stdout.split(" data tests passed")[0].rsplit(" ", 1)[1])
    assert dbt_count >= 60



def test_every_mart_and_the_ledger_and_quarantine_are_documented_column_by_column(bengkulu):
    """outputs.md §3: every mart table and column is documented in the dbt docs site each
    run generates; so are the load ledger and the quarantine, the raw tables the README
    sends analysts and data engineers to first. Checked against what the warehouse holds
    (dbt's catalog), so a new column without a description fails."""
    import json

    target = bengkulu.home_dir / "dbt" / "target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    documented = {**manifest["nodes"], **manifest["sources"]}
    checked, undocumented = [], []
    for uid, table in {**catalog["nodes"], **catalog["sources"]}.items():
        schema, name = table["metadata"]["schema"], table["metadata"]["name"]
        if schema != "marts" and name not in ("load_ledger", "quarantine"):
            continue
        node = documented[uid]
        checked.append(f"{schema}.{name}")
        if not node.get("description", "").strip():
            undocumented.append(f"{schema}.{name}")
        undocumented += [f"{schema}.{name}.{c}" for c in table["columns"]
                         if not node["columns"].get(c, {}).get("description", "").strip()]
    assert {"marts.rankings_umk", "marts.referential_checks", "marts.delivery_freshness", "raw.load_ledger",
            "raw.quarantine"} <= set(checked)
    assert len(checked) == 11 and undocumented == []


@pytest.mark.parametrize("change, message", [
    ({"weights": {"pemda": {"coverage": 30}}}, "weights of pemda sum to 105"),
    ({"weights": {"umk": {"enrolment": -10, "payment_continuity": 90}}}, "must be non-negative"),
    ({"targets": {"badan_usaha": {"ecosystem_extension": 0}}}, "targets must be positive"),
    ({"mandatory_programmes": {"KECIL": ["jkk", "jkn"]}}, "mandatory_programmes.KECIL"),
    ({"referential_gate": 5}, "referential_gate"),
    ({"weigths": {}}, "unknown setting 'weigths'"),
    ({"weights": {"pemda": {"coverage": float("nan")}}}, "weights.pemda.coverage must be a finite number, got nan"),
    ({"targets": {"umk": {"enrolment": float("inf")}}}, "targets.umk.enrolment must be a finite number, got inf"),
])
def test_bad_configuration_is_refused_before_any_work(tmp_path, change, message):
    config = tmp_path / "methodology.yml"
    config.write_text(yaml.safe_dump({"methodology": change}))
    with pytest.raises(methodology.ConfigError, match=message.replace(".", r"\.")):
        methodology.load(config)
    (tmp_path / "landing").mkdir()
    result = paritrana("run", "--landing", str(tmp_path / "landing"), "--year", "2024",
                       "--home", str(tmp_path / "home"), "--config", str(config))
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


@pytest.mark.parametrize("variable", ["PARITRANA_DATA_DOCS_RUNS", "PARITRANA_KEEP_PUBLICATIONS",
                                      "PARITRANA_SUPERSEDED_QUARANTINE", "PARITRANA_MAX_DAYS_BEHIND",
                                      "PARITRANA_READER_COPY_IO"])
def test_bad_retention_setting_is_refused_before_any_work(tmp_path, variable):
    (tmp_path / "landing").mkdir()
    result = paritrana("run", "--landing", str(tmp_path / "landing"), "--year", "2024",
                       "--home", str(tmp_path / "home"), env={variable: "none"})
    assert result.returncode == 1 and variable in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


@pytest.mark.parametrize("variable", ["PARITRANA_DATA_DOCS_RUNS", "PARITRANA_KEEP_PUBLICATIONS",
                                      "PARITRANA_SUPERSEDED_QUARANTINE", "PARITRANA_READER_COPY_IO"])
def test_check_settings_refuses_a_bad_retention_setting(monkeypatch, variable):
    """The DAG's find_deliveries calls check_settings, so a bad value stops the night before
    it loads anything rather than at its gate or its publication."""
    from paritrana.pipeline import check_settings

    check_settings()
    monkeypatch.setenv(variable, "0")
    with pytest.raises(ValueError, match=variable):
        check_settings()


def test_the_daily_extracts_whose_freshness_is_reported_are_the_contracts_deltas():
    """marts.delivery_freshness lists the extracts of the dbt var `delta_extracts`; it must be
    every extract the contract delivers as a delta, and only those."""
    from ingestion.contracts import EXTRACTS

    project = yaml.safe_load((methodology.DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    assert sorted(project["vars"]["delta_extracts"]) == sorted(n for n, e in EXTRACTS.items() if e.kind == "delta")


def test_configuration_hash_is_stable_and_changes_with_values(tmp_path):
    default = methodology.load()
    again = methodology.load()
    config = tmp_path / "m.yml"
    config.write_text("arrears_threshold: 2\n")
    changed = methodology.load(config)
    assert default.sha256 == again.sha256 != changed.sha256
    assert changed.values["arrears_threshold"] == 2 and changed.values["weights"] == default.values["weights"]


def _tables(con, schema):
    return [r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE' "
        "and table_name <> 'incremental_watermarks' order by 1", [schema]).fetchall()]


# What the incremental models record about their last run (state_changes.sql), not data.
BOOKKEEPING = ("_changes", "_transition", "_basis")


def _assert_same_tables(a, b):
    con = duckdb.connect()
    con.execute(f"attach {sql_str(str(a))} as a (read_only)")
    con.execute(f"attach {sql_str(str(b))} as b (read_only)")
    compared = 0
    for schema in ("intermediate", "marts"):
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_catalog = 'a' and table_schema = ? "
            "and table_name <> 'incremental_watermarks'", [schema]).fetchall()
            if not r[0].endswith(BOOKKEEPING)]
        assert tables
        for t in tables:
            for x, y in (("a", "b"), ("b", "a")):
                diff = con.execute(f"select count(*) from (select * from {x}.{schema}.{t} except all "
                                   f"select * from {y}.{schema}.{t})").fetchone()[0]
                assert diff == 0, f"{schema}.{t}: {diff} rows of {x} not in {y}"
            compared += 1
    return compared


def test_incremental_runs_equal_a_full_refresh(tmp_path):
    """Snapshot, then day-by-day deltas (with a correction and re-versions) built
    incrementally, equal a full refresh table for table; also after the as-of date moves."""
    from paritrana.generator import generate

    full = tmp_path / "all"
    generate(full, "demo", scale=0.5, days_after=3)
    landing = tmp_path / "landing"
    landing.mkdir()
    paths = resolve_home(tmp_path / "inc")
    config = methodology.load()

    def arrive(day_prefix):
        for f in sorted(full.rglob("*")):
            if f.is_file() and day_prefix in f.name:
                target = landing / f.relative_to(full)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)

    arrive("__2024-12-31")
    for n, day in enumerate([None, "__2025-01-01", "__2025-01-02", "__2025-01-03"]):
        if day:
            arrive(day)
        ingest_step(paths, landing, f"r{n}", progress=lambda m: None)
        build_step(paths, 2024, dt.date(2024, 12, 31), config, progress=None)
    # Corrections of the snapshot of each incremental extract, some rows changed and some
    # dropped: the keys whose current row came from a superseded delivery are rebuilt from
    # the history (and a key may lose its only row).
    corrections = {"participants": ("participants__2024-12-31.csv.gz", "monthly_wage_idr"),
                   "claims": ("claims__2024-12-31.csv.gz", "amount_idr"),
                   "contributions": ("contributions__2024-12-31.parquet", "workers_billed")}
    with duckdb.connect() as con:
        for extract, (name, column) in corrections.items():
            source = f"read_parquet({sql_str(str(landing / name))})" if name.endswith(".parquet") else \
                f"read_csv({sql_str(str(landing / name))}, all_varchar = true)"
            corrected = tmp_path / f"{extract}.csv"
            con.execute(f"""copy (
                select * exclude (n) replace (
                    case when n % 7 = 2 then cast(cast({column} as bigint) + 1 as varchar)
                         else cast({column} as varchar) end as {column})
                from (select *, row_number() over () as n from {source}) where n % 10 <> 3
                order by n) to {sql_str(str(corrected))} (header)""")
            write_delivery(landing, f"{extract}__2024-12-31.csv", corrected.read_text(),
                           produced_at="2025-01-04T08:00:00+07:00")
    ingest_step(paths, landing, "r4", progress=lambda m: None)
    build_step(paths, 2024, dt.date(2024, 12, 31), config, progress=None)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        superseded = dict(con.execute("select extract, count(*) from raw.load_ledger where status = 'SUPERSEDED' "
                                      "group by extract").fetchall())
        reversioned = con.execute("select count(*) from intermediate.int_claims_current where claim_version > 1"
                                  ).fetchone()[0]
    # the deltas exercised corrections (of every incremental extract) and re-versions
    assert all(superseded.get(e) == 1 for e in corrections) and superseded.get("employers", 0) >= 1, superseded
    assert reversioned >= 1

    refreshed = resolve_home(tmp_path / "full")
    shutil.copy2(paths.warehouse, refreshed.warehouse)
    build_step(refreshed, 2024, dt.date(2024, 12, 31), config, progress=None, full_refresh=True)
    assert _assert_same_tables(paths.warehouse, refreshed.warehouse) >= 10

    # A provisional run with another as-of date recomputes the as-of states.
    build_step(paths, 2025, dt.date(2025, 1, 2), config, progress=None)
    build_step(refreshed, 2025, dt.date(2025, 1, 2), config, progress=None, full_refresh=True)
    _assert_same_tables(paths.warehouse, refreshed.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        assert con.execute("select max(effective_date) from intermediate.int_participant_state").fetchone()[0] \
            == dt.date(2025, 1, 2)


def test_changed_weights_flow_into_scores_and_hash(demo, tmp_path):
    work = demo.copy(tmp_path / "copy")
    config = tmp_path / "coverage_only.yml"
    config.write_text(yaml.safe_dump({"weights": {"pemda": {
        "coverage": 100, "vulnerable_coverage": 0, "non_asn_coverage": 0, "apbd_support": 0, "regulation": 0,
        "employer_compliance": 0, "innovation": 0}}}))
    m = methodology.load(config)
    build_step(work.paths, 2024, dt.date(2024, 12, 31), m, progress=None)
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        rows = con.execute("select total_score, coverage_score, config_sha256 from marts.pemda_indicators "
                           "where eligible").fetchall()
    assert rows and all(abs(t - c) < 1e-9 and h == m.sha256 for t, c, h in rows)


def test_every_duckdb_build_runs_one_model_at_a_time(demo, tmp_path, monkeypatch):
    """Models locate rows by DuckDB row id, which a checkpoint set off by another
    connection's commit can renumber under a running query (profiles.yml): no build, a
    night's or a full refresh, runs two models at once, whatever the environment says."""
    import json
    import re

    work = demo.copy(tmp_path / "copy")
    target = work.paths.home / "dbt"
    monkeypatch.setenv("PARITRANA_DBT_THREADS", "2")  # the knob that used to allow it
    m = methodology.load()
    for full_refresh in (False, True):
        build_step(work.paths, 2024, dt.date(2024, 12, 31), m, progress=None, full_refresh=full_refresh)
        log = (target / "logs" / "dbt.log").read_text()
        assert int(re.findall(r"Concurrency: (\d+) threads", log)[-1]) == 1
        runs = json.loads((target / "target" / "run_results.json").read_text())["results"]
        spans = sorted((t["started_at"], t["completed_at"]) for r in runs for t in r["timing"]
                       if t["name"] == "execute")
        assert len(spans) > 50
        assert all(done <= nxt for (_, done), (nxt, _) in zip(spans, spans[1:]))


def test_nightly_cells_follow_the_delta_and_the_gate_recounts_them(demo, tmp_path):
    """A nightly run applies only the day's changes to int_participant_cells (a cell that
    drifted stays drifted), the marts read the cells, and the gate's independent recount of
    the states blocks publication; a full refresh rebuilds the cells and publishes."""
    work = demo.copy(tmp_path / "w")
    with duckdb.connect(str(work.paths.warehouse)) as con:
        con.execute("""
            insert into intermediate.int_participant_cells
            select md5('planted drift'), * exclude (cell_key, participants), 7
            from intermediate.int_participant_cells
            where cell_key = (select min(cell_key) from intermediate.int_participant_cells_as_of
                              where is_counted_active)""")
    newcomer = participant(kpj="17099999901", nik="1771014508900003", segment="BPU", npp="", region_code="17.71",
                           occupation="PETANI", funding="SELF", jp="0", jkp="0", effective_date="2024-06-01")
    # a row effective after D cannot change the state on D: the run does not touch its key
    later = participant(kpj="17099999902", nik="1771014508900004", segment="BPU", npp="", region_code="17.71",
                        occupation="PETANI", funding="SELF", jp="0", jkp="0", effective_date="2025-01-05")
    write_delivery(work.landing, "participants__2025-01-06.csv", csv_text(PARTICIPANT_HEADER, [newcomer, later]),
                   produced_at="2025-01-06T01:00:00+07:00")
    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "marts.totals_reconcile.expect_column_values_to_be_between(difference) on total=participants_active " \
        "(difference 7): observed" in result.stderr
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        assert con.execute("select changed_kpj from intermediate.int_participant_state_changes").fetchall() \
            == [("17099999901",)]
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        cells, active, states = con.execute("""
            select (select sum(participants) from intermediate.int_participant_cells_as_of where is_counted_active),
                   (select sum(participants_active) from marts.pemda_indicators where level = 'PROVINSI'),
                   (select count(*) from intermediate.int_participants_as_of where is_counted_active)""").fetchone()
        newcomer_counted = con.execute("select count(*) from intermediate.int_participants_as_of "
                                       "where kpj = '17099999901' and is_counted_active").fetchone()[0]
    assert newcomer_counted == 1  # the day's change reached the states...
    assert cells == active == states + 7  # ...and the cells kept the planted drift: only the delta was applied

    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir),
                       "--full-refresh")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        assert con.execute("select (select sum(participants_active) from marts.pemda_indicators "
                           "where level = 'PROVINSI') - (select count(*) from intermediate.int_participants_as_of "
                           "where is_counted_active)").fetchone()[0] == 0


def test_nightly_bill_counts_follow_the_delta_and_the_gate_recounts_them(demo, tmp_path):
    """int_employer_bill_counts takes only the day's bill changes (a planted drift stays),
    compliance reads it, the gate's recount of the bills blocks publication, and a full
    refresh rebuilds the counts."""
    work = demo.copy(tmp_path / "w")
    with duckdb.connect(str(work.paths.warehouse)) as con:
        npp = con.execute("select min(npp) from intermediate.int_employer_compliance "
                          "where bills_for_year > 0").fetchone()[0]
        con.execute("update intermediate.int_employer_bill_counts set arrears_months = arrears_months + 3 "
                    "where npp = ?", [npp])
        bill = con.execute("select npp, period_month from intermediate.int_bills_current "
                           "where npp <> ? and paid_date is null and due_date <= date '2024-12-31' limit 1",
                           [npp]).fetchone()
    paid = "npp,period_month,workers_billed,billed_idr,paid_idr,paid_date\n" \
        f"{bill[0]},{bill[1]},1,100000,100000,2024-12-30\n"
    write_delivery(work.landing, "contributions__2025-01-06.csv", paid, produced_at="2025-01-06T01:00:00+07:00")
    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "marts.totals_reconcile.expect_column_values_to_be_between(difference) on total=bills_in_arrears " \
        "(difference 3): observed" in result.stderr
    recount = """select count(case when is_in_arrears then 1 end) from intermediate.int_bills_checked
                 where npp = ?"""
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        for arrears_npp, drift in ((npp, 3), (bill[0], 0)):
            counted = con.execute("select arrears_months from intermediate.int_employer_compliance where npp = ?",
                                  [arrears_npp]).fetchone()[0]
            assert counted == con.execute(recount, [arrears_npp]).fetchone()[0] + drift, arrears_npp
        assert con.execute("select paid_date from intermediate.int_bills_current where npp = ? and period_month = ?",
                           list(bill)).fetchone()[0] == dt.date(2024, 12, 30)  # the day's payment arrived

    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir),
                       "--full-refresh")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        assert con.execute("select arrears_months from intermediate.int_employer_compliance where npp = ?",
                           [npp]).fetchone()[0] == con.execute(recount, [npp]).fetchone()[0]


def test_claim_orphans_follow_the_delta_and_resolve_when_the_participant_arrives(demo, tmp_path):
    """A nightly claim whose kpj has no participant row is an orphan (left out, counted by
    claims_kpj); when a row for that kpj arrives later (effective after D, so only the
    history has it), the next nightly resolves it and the claim counts as paid."""
    work = demo.copy(tmp_path / "w")
    kpj = "17099999988"
    checks = "select orphans from marts.referential_checks where check_name = 'claims_kpj'"
    paid = "select claims_paid_count from marts.pemda_indicators where entity_code = '17' and level = 'PROVINSI'"
    flag = "select orphan_kpj, is_paid_for_year from intermediate.int_claims_checked where claim_id = 'C209900000001'"
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        orphans_before, paid_before = con.execute(checks).fetchone()[0], con.execute(paid).fetchone()[0]
        npp = con.execute("select min(npp) from intermediate.int_employers_as_of "
                          "where province_code = '17' and not is_referential_orphan").fetchone()[0]
    header = "claim_id,claim_version,kpj,npp,region_code,program,benefit_type,submitted_date,status,paid_date,amount_idr"
    row = {"claim_id": "C209900000001", "claim_version": "1", "kpj": kpj, "npp": npp, "region_code": "17.71",
           "program": "JKM", "benefit_type": "DEATH_BENEFIT", "submitted_date": "2024-11-01", "status": "PAID",
           "paid_date": "2024-11-20", "amount_idr": "42000000"}

    def night(name: str, text: str, produced_at: str) -> tuple:
        write_delivery(work.landing, name, text, produced_at=produced_at)
        result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
            return con.execute(flag).fetchone(), con.execute(checks).fetchone()[0], con.execute(paid).fetchone()[0]

    assert night("claims__2025-01-06.csv", csv_text(header, [row]), "2025-01-06T01:00:00+07:00") \
        == ((True, False), orphans_before + 1, paid_before)
    late = participant(kpj=kpj, nik="1771014508900009", segment="BPU", npp="", region_code="17.71",
                       occupation="PETANI", funding="SELF", jp="0", jkp="0", effective_date="2025-01-05")
    assert night("participants__2025-01-07.csv", csv_text(PARTICIPANT_HEADER, [late]), "2025-01-07T01:00:00+07:00") \
        == ((False, True), orphans_before, paid_before + 1)
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from intermediate.int_participant_state where kpj = ?",
                           [kpj]).fetchone()[0] == 0  # not in the states on D: only the history has it


def test_a_night_appends_the_rows_it_outranks_and_a_participant_correction_rebuilds(demo, tmp_path):
    """The participants' states are the history on or before D minus the outdated rows: a
    night's new version outranks the state it replaces, which is appended to the outdated
    rows (the list is not rebuilt); a correction that drops that version brings the old
    state back, by rebuilding the list."""
    work = demo.copy(tmp_path / "w")
    state = ("select load_id, line_number, monthly_wage_idr from intermediate.int_participant_state "
             "where kpj = ?")
    step = "select full_rebuild from intermediate.int_participant_state_transition"
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        kpj, npp, region, segment, occupation, funding, birth, gender, load_id, line = con.execute("""
            select kpj, npp, region_code, segment, occupation, funding, birth_date, gender, load_id, line_number
            from intermediate.int_participant_state
            where segment = 'PU' and status = 'ACTIVE' and effective_date < date '2024-12-01'
            order by kpj limit 1""").fetchone()
        old_state = con.execute(state, [kpj]).fetchone()
        outdated_before = con.execute("select count(*) from intermediate.int_participant_outdated_rows").fetchone()[0]
    raise_ = participant(kpj=kpj, npp=npp, region_code=region, segment=segment, occupation=occupation,
                         funding=funding, birth_date=str(birth), gender=gender, monthly_wage_idr="9100000",
                         effective_date="2024-12-15")
    newcomer = participant(kpj="17099999903", segment="BPU", npp="", region_code="17.71", occupation="PETANI",
                           funding="SELF", jp="0", jkp="0", effective_date="2024-06-01")

    def night(rows: list[dict], produced_at: str) -> tuple:
        write_delivery(work.landing, "participants__2025-01-06.csv", csv_text(PARTICIPANT_HEADER, rows),
                       produced_at=produced_at)
        result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
            return (con.execute(state, [kpj]).fetchall(), con.execute(step).fetchone()[0],
                    con.execute("select load_id, line_number from intermediate.int_participant_outdated_rows "
                                "where kpj = ?", [kpj]).fetchall(),
                    con.execute("select count(*) from intermediate.int_participant_outdated_rows").fetchone()[0])

    states, rebuilt, outdated, n_outdated = night([raise_, newcomer], "2025-01-06T01:00:00+07:00")
    assert [wage for _, _, wage in states] == [9100000]  # one state, the new version
    assert not rebuilt
    assert (load_id, line) in outdated and n_outdated == outdated_before + 1

    states, rebuilt, outdated, n_outdated = night([newcomer], "2025-01-06T09:00:00+07:00")  # the correction
    assert states == [old_state]
    assert rebuilt
    assert (load_id, line) not in outdated
    assert n_outdated == outdated_before


def test_key_tests_check_changed_keys_after_green_builds_and_every_key_after_a_red_one(demo, tmp_path):
    """unique_current_key: after green builds it looks only at the keys the last run changed
    (a duplicate elsewhere is not its business); once a build has ended red, the next build
    checks every key."""
    from paritrana.transform import BuildFailed

    work = demo.copy(tmp_path / "w")
    changed_kpj = "17099999902"
    write_delivery(work.landing, "participants__2025-01-06.csv", csv_text(PARTICIPANT_HEADER, [participant(
        kpj=changed_kpj, segment="BPU", npp="", occupation="PETANI", funding="SELF", jp="0", jkp="0",
        effective_date="2024-06-01")]), produced_at="2025-01-06T01:00:00+07:00")
    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with duckdb.connect(str(work.paths.warehouse)) as con:
        assert con.execute("select full_check from intermediate.int_participant_state_transition").fetchall() \
            == [(False,)]
        assert con.execute("select changed_kpj from intermediate.int_participant_state_changes").fetchall() \
            == [(changed_kpj,)]
        unchanged_kpj = con.execute("select min(kpj) from intermediate.int_participant_state").fetchone()[0]
        for kpj in (changed_kpj, unchanged_kpj):  # one duplicate inside the run's changes, one outside
            # the states are a view over the raw rows: a copy of the row behind a state,
            # under another line number, is a second state for its kpj
            con.execute("insert into raw.participants select * replace (_line + 1000000 as _line) "
                        "from raw.participants where (_load_id, _line) = "
                        "(select (load_id, line_number) from intermediate.int_participant_state where kpj = ?)", [kpj])

    res = _invoke(work.paths, ["test", "--select", "int_participant_state,test_name:unique_current_key"],
                  dbt_env(2024, dt.date(2024, 12, 31)))
    assert not res.success
    assert [(r.node.name, r.failures) for r in res.result.results if r.node.resource_type == "test"] == \
        [("unique_current_key_int_participant_state_kpj", 1)]

    with pytest.raises(BuildFailed, match="unique_current_key_int_participant_state_kpj: fail .*Got 2 results"):
        build_step(work.paths, 2024, dt.date(2024, 12, 31), methodology.load(), progress=None)


def test_ingestion_runs_under_its_own_memory_limit(tmp_path, monkeypatch):
    """Ingestion's connection gets the lower of the ingestion limit and the general one."""
    from paritrana import pipeline, warehouse

    assert warehouse.size_bytes("4GB") == 4 * 10**9
    assert warehouse.size_bytes("1.5 GiB") == 3 * 2**29
    with pytest.raises(ValueError):
        warehouse.size_bytes("lots")
    seen = []
    monkeypatch.setattr(pipeline, "ingest", lambda con, *a: seen.append(
        con.execute("select current_setting('memory_limit')").fetchone()[0]))
    landing = tmp_path / "landing"
    landing.mkdir()
    for general, ingest_limit, expected in (("4GB", "2GB", "1.8 GiB"), ("1GB", "2GB", "953.6 MiB")):
        monkeypatch.setattr(warehouse, "DEFAULT_MEMORY_LIMIT", general)
        monkeypatch.setattr(warehouse, "INGEST_MEMORY_LIMIT", ingest_limit)
        ingest_step(resolve_home(tmp_path / "home"), landing, "run")
        assert seen[-1] == expected


def test_closed_sets_are_enums_in_the_raw_layer_and_text_in_every_model(demo):
    """Every closed set of extracts.md is stored in its raw table as an ENUM of its values,
    sorted (so it orders as its text), and read as text by the models."""
    from ingestion.contracts import EXTRACTS

    closed = {(e.name, c.name): c.allowed for e in EXTRACTS.values() for c in e.columns
              if c.type == "text" and c.allowed}
    assert len(closed) == 12
    with duckdb.connect(str(demo.paths.warehouse), read_only=True) as con:
        raw = {}
        for (table, column), allowed in closed.items():
            kind, values = con.execute(f"select typeof({column}), enum_range({column}) from raw.{table} limit 1"
                                       ).fetchone()
            raw[(table, column)] = (kind.startswith("ENUM"), values)
        enums_elsewhere = con.execute("select table_schema, table_name, column_name from information_schema.columns "
                                      "where table_schema <> 'raw' and data_type like 'ENUM%'").fetchall()
        staged = dict(con.execute("select column_name, data_type from information_schema.columns "
                                  "where table_name = 'stg_claims'").fetchall())
    assert raw == {key: (True, sorted(allowed)) for key, allowed in closed.items()}
    assert enums_elsewhere == []
    assert staged["status"] == staged["program"] == "VARCHAR"


def test_a_warehouse_holding_closed_sets_as_text_loads_and_builds_the_same(demo, tmp_path):
    """A warehouse made before the raw layer's ENUMs holds those columns as text: it keeps
    them, and loads, builds and publishes the same tables as a new one, with no migration."""
    from ingestion.contracts import EXTRACTS
    from ingestion.raw_schema import loaded_columns
    from ingestion.rules import quote_ident
    from paritrana.warehouse import writer

    old = resolve_home(tmp_path / "old")
    shutil.copytree(demo.paths.home / "secrets", old.home / "secrets")  # the same NIK tokens
    with writer(old) as con:
        con.execute("create schema raw")
        for extract in EXTRACTS.values():
            columns = ", ".join(f"{quote_ident(n)} {'VARCHAR' if t.startswith('ENUM') else t}"
                                for n, t in loaded_columns(extract))
            con.execute(f"create table raw.{extract.name} ({columns})")
    # Every file staged in the warehouse, as national files are: a first load's stage then
    # becomes the raw table, and must have been written in the table's own types.
    result = paritrana("run", "--landing", str(demo.landing), "--year", "2024", "--home", str(old.home),
                       env={"PARITRANA_TEMP_STAGE_MAX_ROWS": "0"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with duckdb.connect(str(old.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from information_schema.columns where data_type like 'ENUM%'"
                           ).fetchone()[0] == 0
        assert con.execute("select count(*) from raw.participants").fetchone()[0] > 0
    assert _assert_same_tables(old.warehouse, demo.paths.warehouse) >= 10


def test_a_damaged_warehouse_is_named_with_the_way_back_and_a_rebuild_from_the_landing_publishes_the_same(
        demo, tmp_path):
    """A warehouse cut short or overwritten (a failing disk, a bad copy) used to end in
    DuckDB's traceback. The run now stops naming the file and the two ways back; the
    second, a rebuild from the landing, publishes the very same rankings."""
    import hashlib

    def run(work):
        return paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))

    def damage(work, how):
        warehouse = work.home_dir / "warehouse.duckdb"
        data = warehouse.read_bytes()
        warehouse.write_bytes(how(data))
        return warehouse

    cut_short = demo.copy(tmp_path / "cut")
    damage(cut_short, lambda data: data[:len(data) // 4])
    overwritten = demo.copy(tmp_path / "overwritten")
    warehouse = damage(overwritten, lambda data: data[:12288] + bytes(range(256)) * ((len(data) - 12288) // 256))
    for work in (cut_short, overwritten):
        result = run(work)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert f"the warehouse {work.home_dir / 'warehouse.duckdb'} is damaged (" in result.stderr
        assert "move it aside (keep it for inspection) and run again" in result.stderr

    warehouse.rename(warehouse.with_name("warehouse.damaged"))
    rebuilt = run(overwritten)
    assert rebuilt.returncode == 0, rebuilt.stdout[-2000:] + rebuilt.stderr[-2000:]
    digests = lambda folder: {f.name: hashlib.sha256(f.read_bytes()).hexdigest()  # noqa: E731
                              for f in folder.glob("rankings_*.csv")}
    before = (demo.home_dir / "published" / "2024" / "latest").resolve()
    after = (overwritten.home_dir / "published" / "2024" / "latest").resolve()
    assert after.name != before.name and len(digests(after)) == 4  # a new publication, the same bytes
    assert digests(after) == digests(before)


def test_a_moved_home_and_a_new_as_of_date_keep_dbts_parsed_project(demo, tmp_path):
    """A home restored to another folder (and every test's copy) builds from dbt's saved
    parse: the profile names the warehouse relative to the home, so it renders the same
    wherever the home is. It named it absolute, and dbt parsed the whole project again.
    So does a night with a new as-of date: dbt re-parses everything when its --vars
    change, and the date now reaches the SQL through the environment."""
    moved = demo.copy(tmp_path / "restored elsewhere")
    log = moved.home_dir / "dbt" / "logs" / "dbt.log"
    for as_of in ("2024-12-31", "2024-12-30"):
        before = log.stat().st_size
        result = paritrana("run", "--landing", str(moved.landing), "--year", "2024", "--as-of", as_of,
                           "--home", str(moved.home_dir))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        with log.open("rb") as f:
            f.seek(before)
            this_run = f.read().decode()
        # not a file parsed again: the date is read only when SQL is compiled to run
        assert "Nothing changed, skipping partial parsing" in this_run and "Unable to do partial parsing" \
            not in this_run, (as_of, [line for line in this_run.splitlines() if "parsing" in line.lower()])
        assert f"warehouse: dbt built {demo_models(demo)} models" in result.stdout  # and it built all the same
    with duckdb.connect(str(moved.paths.warehouse), read_only=True) as con:  # as of the date it was given
        assert con.execute("select distinct as_of from marts.rankings_pemda_provinsi").fetchall() == [(dt.date(2024, 12, 30),)]


def demo_models(demo) -> int:
    return int(demo.result.stdout.split("warehouse: dbt built ")[1].split()[0])


def test_a_build_by_changed_dbt_models_recomputes_every_incremental_row_and_says_why(demo, tmp_path, monkeypatch):
    """After an upgrade that changed an incremental model, the rows that no load touched are
    the new model's too (an incremental run would have kept the old model's): the first build
    by other models is a full refresh and says why, and the builds after it are incremental
    again. So is the first build after one by a version before 0.3.14, which records no
    models: an upgrade from it, or a rollback to it and back."""
    from paritrana import transform

    work = demo.copy(tmp_path / "w")
    config = methodology.load()
    night = dt.date(2024, 12, 31)
    project = tmp_path / "dbt_project"
    shutil.copytree(methodology.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "intermediate" / "int_claims_current.sql"
    assert "order_by='claim_version desc," in model.read_text()
    # the next version keeps a claim's first version instead of its highest
    model.write_text(model.read_text().replace("order_by='claim_version desc,", "order_by='claim_version asc,"))

    def reversioned():
        with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
            return con.execute("select count(*) from intermediate.int_claims_current where claim_version > 1"
                               ).fetchone()[0]

    before = reversioned()
    assert before > 0
    monkeypatch.setattr(transform, "DBT_PROJECT_DIR", project)
    upgraded = build_step(work.paths, 2024, night, config, progress=None)
    assert upgraded.rebuilt_because.startswith("its dbt models changed since its last build (by 0.")
    assert reversioned() < before
    refreshed = resolve_home(tmp_path / "full")
    shutil.copy2(work.paths.warehouse, refreshed.warehouse)
    build_step(refreshed, 2024, night, config, progress=None, full_refresh=True)
    assert _assert_same_tables(work.paths.warehouse, refreshed.warehouse) >= 10
    assert build_step(work.paths, 2024, night, config, progress=None).rebuilt_because is None
    # a documentation edit changes no row: the next build stays incremental
    docs = model.with_suffix(".yml")
    docs.write_text(docs.read_text().replace("description: Claim identifier.", "description: The claim's id."))
    assert build_step(work.paths, 2024, night, config, progress=None).rebuilt_because is None

    monkeypatch.undo()  # back to the project's own models, through the command line
    old = "its last build was by a version before 0.3.14, which does not record its dbt models"
    for forget in ("name = 'built_by_models'",  # an upgrade from before 0.3.14
                   # a rollback: 0.3.13 finished a build after this version's, writing its stamp
                   # as it always did (without the models) and keeping this version's record
                   "name = 'last_build'"):
        with duckdb.connect(str(work.paths.warehouse)) as con:
            if forget.endswith("'last_build'"):
                stamp = json.loads(con.execute("select value from raw.warehouse_settings where " + forget
                                               ).fetchone()[0])
                con.execute("update raw.warehouse_settings set value = ? where " + forget,
                            [json.dumps({k: v for k, v in stamp.items() if k not in ("models", "code_version")})])
            else:
                con.execute("delete from raw.warehouse_settings where " + forget)
        result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert f"  rebuilt in full (incremental models too): {old}\n" in result.stdout
        assert reversioned() == before
    again = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert again.returncode == 0 and "rebuilt in full" not in again.stdout + demo.result.stdout


def test_the_models_fingerprint_follows_what_can_change_a_row_not_the_documentation(tmp_path, monkeypatch):
    """A build by other dbt models rebuilds the incremental ones in full, so the fingerprint
    that tells them apart must change with SQL and configuration, and not with a description."""
    from paritrana import transform

    project = tmp_path / "dbt_project"
    shutil.copytree(methodology.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setattr(transform, "DBT_PROJECT_DIR", project)
    first = transform.models_fingerprint()
    docs = project / "models" / "intermediate" / "int_claims_current.yml"
    original = docs.read_text()

    def with_docs(text: str) -> str:
        docs.write_text(text)
        return transform.models_fingerprint()

    assert with_docs(original.replace("description: Claim identifier.", "description: The claim's id.")) == first
    assert with_docs(original.replace("description: >\n      Each claim's current state",
                                      "description: >\n      Every claim's current state")) == first
    # what is not a description still counts: the order of a column's tests, another entry,
    # a key named description where it is not one (in meta)
    assert with_docs(original.replace("data_tests: [unique_current_key, not_null]",
                                      "data_tests: [not_null, unique_current_key]")) != first
    another = "models:\n  - name: int_claims_extra\n    config: {enabled: false}\n"
    assert with_docs(original.replace("models:\n", another, 1)) != first
    assert with_docs(original.replace("description: Claim identifier.",
                                      "description: Claim identifier.\n        meta: {description: x}")) != first
    assert with_docs(original) == first
    settings = project / "dbt_project.yml"
    settings.write_text(settings.read_text() + "\n# a comment\n")  # the project's settings count as written
    assert transform.models_fingerprint() != first
    settings.write_text(settings.read_text().removesuffix("\n# a comment\n"))
    assert transform.models_fingerprint() == first
    sql = project / "models" / "intermediate" / "int_claims_current.sql"
    sql.write_text(sql.read_text() + "\n-- a comment\n")  # SQL counts as written
    assert transform.models_fingerprint() != first


def test_a_build_leaves_the_processs_environment_as_it_found_it(demo, tmp_path, monkeypatch):
    """dbt reads the run's year and as-of date from the environment while it builds; after
    the build the process's environment is as it was. A process that goes on (the DAG's
    tasks under dag.test(), a notebook) kept the last build's date, and the warehouse's
    name, as if the user had set them."""
    from paritrana import transform

    work = demo.copy(tmp_path / "w")
    monkeypatch.delenv("PARITRANA_YEAR", raising=False)
    monkeypatch.delenv("PARITRANA_WAREHOUSE", raising=False)
    monkeypatch.setenv("PARITRANA_AS_OF", "the user's own")
    result = transform.build(work.paths, 2024, dt.date(2024, 12, 30), methodology.load(), progress=lambda _: None,
                             select="delivery_freshness")
    assert [(n.name, n.status) for n in result.nodes if n.resource_type == "model"] == [("delivery_freshness", "success")]
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:  # dbt did see this build's values
        assert con.execute("select distinct year, as_of from marts.delivery_freshness").fetchall() == \
            [(2024, dt.date(2024, 12, 30))]
    assert "PARITRANA_YEAR" not in os.environ and "PARITRANA_WAREHOUSE" not in os.environ
    assert os.environ["PARITRANA_AS_OF"] == "the user's own"
