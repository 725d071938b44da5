"""The generator: deterministic bytes, calibrated Bengkulu figures, planted defects caught."""
from __future__ import annotations

import hashlib
import json

from paritrana.generator import generate


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_arguments_same_bytes(tmp_path):
    generate(tmp_path / "a", "demo", scale=0.1, seed=7, days_after=2)
    generate(tmp_path / "b", "demo", scale=0.1, seed=7, days_after=2)
    generate(tmp_path / "c", "demo", scale=0.1, seed=8, days_after=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")



def test_more_days_extend_the_same_history(tmp_path):
    """`--days N`'s files are `--days N+1`'s without its last day, byte for byte, defects and
    all: a landing can be extended by generating again with more days (before 0.3.24 the
    snapshot's claims, the late file and the corrected file moved with N)."""
    for n in (1, 2, 3):
        generate(tmp_path / f"d{n}", "demo", scale=0.1, seed=7, days_after=n)
    digests = {n: _digest(tmp_path / f"d{n}") for n in (1, 2, 3)}
    manifests = {n: json.loads((tmp_path / f"d{n}" / ".generator.json").read_text()) for n in (1, 2, 3)}
    for n in (1, 2):
        shorter = {name: d for name, d in digests[n].items() if name != ".generator.json"}
        longer = digests[n + 1]
        assert {name: longer.get(name) for name in shorter} == shorter
        extra = set(longer) - set(shorter) - {".generator.json"}
        assert extra and all(f"2025-01-0{n + 1}" in name for name in extra), extra
        assert manifests[n + 1]["files"][:len(manifests[n]["files"])] == manifests[n]["files"]
        assert manifests[n + 1]["defects"] == manifests[n]["defects"]
    # every kind of defect is planted with a single day, and the December payments the
    # January delta reverses are all reversed on day 1
    assert {d["kind"] for d in manifests[1]["defects"]} == {
        "malformed_row", "exact_duplicate", "redelivery", "correction", "late_file"}
    import duckdb
    con = duckdb.connect()
    day_1 = tmp_path / "d1" / "claims__2025-01-01.csv"
    reversed_ = con.execute(f"select count(*) from read_csv('{day_1}', all_varchar = true) "
                           "where status = 'REJECTED' and claim_version = '3'").fetchone()[0]
    assert reversed_ == 3
    # without deltas nothing is reversed later, so the snapshot has none of those claims
    generate(tmp_path / "d0", "demo", scale=0.1, seed=7, days_after=0)
    snapshot = lambda n: f"read_csv('{tmp_path}/d{n}/claims__2024-12-31.csv.gz', all_varchar = true)"  # noqa: E731
    assert con.execute(f"select * from {snapshot(0)} except all select * from {snapshot(1)}").fetchall() == []
    only_with_days = con.execute(f"""select claim_id, status, paid_date, amount_idr from {snapshot(1)}
                                    except all select claim_id, status, paid_date, amount_idr from {snapshot(0)}""")
    paid = [r for r in only_with_days.fetchall() if r[1] == "PAID"]
    assert [(p[2], p[3]) for p in paid] == [("2024-12-20", "12000000")] * 3



def test_a_landing_grown_by_more_days_loads_only_the_new_day(tmp_path, load, sql):
    """A data engineer generates two days, loads them, then generates the same landing again
    with three: the files already loaded are re-deliveries, nothing is taken for a
    correction, and the warehouse equals a load of the three days at once."""
    landing = tmp_path / "landing"
    generate(landing, "demo", scale=0.1, seed=7, days_after=2)
    load(landing, "night-2")
    generate(landing, "demo", scale=0.1, seed=7, days_after=3)
    report = load(landing, "night-3")
    loaded = sorted(r.file_name for r in report.results if r.status == "LOADED")
    assert loaded and all("2025-01-03" in name for name in loaded), loaded
    earlier = {r.file_name: r.status for r in report.results if "2025-01-03" not in r.file_name}
    # the corrected file's first version is stale, as on its first night; the rest is known
    assert {n for n, status in earlier.items() if status != "SKIPPED_REDELIVERY"} == {"employers__2025-01-01.csv"}
    assert earlier["employers__2025-01-01.csv"] == "SKIPPED_STALE"
    assert sql("select count(*) from raw.load_ledger where status = 'SUPERSEDED'") == [(1,)]  # day 1's correction
    tables = ("participants", "employers", "claims", "contributions")
    grown = {t: sql(f"select count(*), sum(hash(columns(* exclude (_load_id)))) from raw.{t}") for t in tables}

    at_once = tmp_path / "at-once"
    generate(at_once, "demo", scale=0.1, seed=7, days_after=3)
    from paritrana.settings import resolve_home
    from paritrana.warehouse import writer
    from ingestion.loader import ingest
    from conftest import KEY
    fresh = resolve_home(tmp_path / "fresh")
    with writer(fresh) as con:
        ingest(con, at_once, KEY, "all")
    import duckdb
    with duckdb.connect(str(fresh.warehouse), read_only=True) as con:
        for t in tables:
            assert con.execute(f"select count(*), sum(hash(columns(* exclude (_load_id)))) from raw.{t}"
                               ).fetchall() == grown[t], t


def test_bengkulu_claims_are_calibrated_through_ingestion(tmp_path, load, sql):
    """Paid claims of province 17 in 2024, current versions, after every delta: the published figures."""
    generate(tmp_path / "in", "bengkulu-2024", days_after=3)
    load(tmp_path / "in")
    (count, amount, children, sch_amount), = sql("""
        with current as (
            select * from raw.claims
            qualify row_number() over (partition by claim_id order by claim_version desc, _business_date desc) = 1)
        select count(*), sum(amount_idr), count(*) filter (where benefit_type = 'SCHOLARSHIP'),
               sum(amount_idr) filter (where benefit_type = 'SCHOLARSHIP')
        from current where status = 'PAID' and year(paid_date) = 2024 and region_code like '17.%'""")
    assert (count, amount, children, sch_amount) == (15_908, 205_700_000_000, 429, 1_680_000_000)
    regions = sql("select region_code, name from raw.regions order by 1")
    assert regions[0] == ("17", "Provinsi Bengkulu") and ("17.71", "Kota Bengkulu") in regions and len(regions) == 11
    assert sql("select employed from raw.workforce where region_code = '17' and year = 2024") == [(1_101_234,)]
    assert sql("select minimum_wage_idr from raw.minimum_wages where region_code = '17' and year = 2024") == \
        [(2_507_079,)]
    (active,), = sql("""select count(*) from (select * from raw.participants qualify row_number() over
                        (partition by kpj order by effective_date desc, _business_date desc, _line desc) = 1)
                        where status = 'ACTIVE'""")
    assert 195_000 < active < 230_000


def test_every_planted_defect_is_caught(tmp_path, load, sql):
    generate(tmp_path / "in", "demo", scale=0.2, days_after=3)
    report = load(tmp_path / "in")
    manifest = json.loads((tmp_path / "in" / ".generator.json").read_text())
    quarantine = {(f, line): sorted(c) for f, line, c in sql("select file_name, line, reason_codes from raw.quarantine")}
    statuses = {r.file_name: r for r in report.results}
    kinds = set()
    for d in manifest["defects"]:
        kinds.add(d["kind"])
        if d["kind"] == "malformed_row":
            assert quarantine[(d["file"], d["line"])] == sorted(d["reason_codes"]), d
        elif d["kind"] == "exact_duplicate":
            assert (d["file"], d["line"]) not in quarantine and statuses[d["file"]].rows_duplicate >= 1
        elif d["kind"] == "redelivery":
            assert statuses[d["file"]].status == "SKIPPED_REDELIVERY"
        elif d["kind"] == "correction":
            assert statuses[d["file"]].superseded == d["corrects"]
        elif d["kind"] == "late_file":
            assert statuses[d["file"]].status == "LOADED"
    assert kinds == {"malformed_row", "exact_duplicate", "redelivery", "correction", "late_file"}
    planted_codes = {c for d in manifest["defects"] for c in d.get("reason_codes", [])}
    assert planted_codes == {"MISSING_VALUE", "BAD_TYPE", "BAD_FORMAT", "NOT_IN_SET", "OUT_OF_RANGE",
                             "INCONSISTENT", "KEY_CONFLICT"}
    # Nothing else was quarantined: the clean part of the data is clean.
    assert len(quarantine) == sum(d["kind"] == "malformed_row" for d in manifest["defects"])


def test_national_profile_shape(tmp_path):
    m = generate(tmp_path / "in", "national", scale=0.002)
    regions = next(f for f in m["files"] if f["extract"] == "regions")
    assert regions["rows"] == 38 + 514
    participants = next(f for f in m["files"] if f["extract"] == "participants")
    assert 0.002 * 45.2e6 * 0.9 < participants["rows"] < 0.002 * 45.2e6 * 1.35


def test_a_week_of_deltas_pays_the_claims_submitted_in_it(tmp_path):
    """Each day pays a third of the open claims, the oldest first: after a few days these are
    claims submitted in earlier deltas, which must be found (they once were not, and a
    week of deltas failed to generate)."""
    import duckdb

    generate(tmp_path / "in", "national", scale=0.002, days_after=7)
    con = duckdb.connect()
    rows = lambda day: f"read_csv('{tmp_path}/in/claims__2025-01-0{day}.csv', all_varchar = true)"  # noqa: E731
    submitted_day_1 = {r[0] for r in con.execute(
        f"select claim_id from {rows(1)} where status = 'SUBMITTED'").fetchall()}
    paid_later = {r[0] for day in range(2, 8) for r in con.execute(
        f"select claim_id from {rows(day)} where status = 'PAID' and claim_version = '2'").fetchall()}
    assert submitted_day_1 and submitted_day_1 & paid_later


def test_generating_again_into_a_landing_leaves_exactly_what_the_new_manifest_lists(tmp_path):
    """A `--days 3` landing generated again with `--days 1` kept days 2 and 3, unlisted, and
    the next run loaded them; files the generator did not write stay."""
    import os

    landing = tmp_path / "l"
    generate(landing, "demo", scale=0.2, days_after=3)
    (landing / "notes.txt").write_text("mine")
    manifest = generate(landing, "demo", scale=0.2, days_after=1)
    listed = {e["file"] for e in manifest["files"] + manifest["defects"] if "file" in e}
    listed |= {name + ".ctl.json" for name in listed}
    on_disk = {os.path.relpath(os.path.join(root, f), landing) for root, _, files in os.walk(landing) for f in files}
    assert on_disk - listed == {".generator.json", "notes.txt"} and listed <= on_disk
    assert not any("2025-01-02" in name or "2025-01-03" in name for name in on_disk)
