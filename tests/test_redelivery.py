"""Re-delivery, corrections, and results independent of arrival order (extracts.md §1)."""
from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from conftest import PARTICIPANT_HEADER, csv_text, participant, write_delivery

from ingestion.loader import describe
from paritrana.generator import generate
from paritrana.pipeline import ingest_summary

RAW_TABLES = ("participants", "employers", "claims", "contributions", "regions", "workforce", "minimum_wages",
              "pemda_assessment")


def _contents(sql):
    """Every raw table as a sorted list of rows, without load ids (which depend on arrival)."""
    out = {}
    for t in RAW_TABLES:
        out[t] = sorted(sql(f"select * exclude (_load_id) from raw.{t}"), key=repr)
    out["quarantine"] = sorted(sql("select file_name, line, reason_details, content from raw.quarantine"), key=repr)
    out["ledger"] = sorted(sql("select file_name, status from raw.load_ledger where status <> 'SKIPPED_STALE'"))
    return out


def test_same_file_again_is_a_no_op(tmp_path, load, sql):
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]))
    load(landing)
    (landing / "resent").mkdir()
    for suffix in ("", ".ctl.json"):
        shutil.copy(landing / f"participants__2024-12-31.csv{suffix}", landing / "resent")
    r = load(landing).results
    assert [(x.file_name, x.status) for x in r] == [("resent/participants__2024-12-31.csv", "SKIPPED_REDELIVERY")]
    assert sql("select count(*) from raw.participants") == [(1,)]
    # Touching the file (a provider dropping it again) is still a no-op.
    os.utime(landing / "participants__2024-12-31.csv", ns=(1, 1))
    assert [x.status for x in load(landing).results] == ["SKIPPED_REDELIVERY"]
    assert sql("select count(*) from raw.participants") == [(1,)]


def test_correction_replaces_the_rows_of_that_date_only(tmp_path, load, sql):
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-30.csv",
                   csv_text(PARTICIPANT_HEADER, [participant(kpj="17000000009")]))
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [
        participant(kpj="17000000001"), participant(kpj="17000000002")]))
    load(landing)
    write_delivery(landing, "participants__2024-12-31.csv.gz", csv_text(PARTICIPANT_HEADER, [
        participant(kpj="17000000001", monthly_wage_idr="4000000")]), produced_at="2025-01-02T08:00:00+07:00")
    report = load(landing)
    r = report.results
    assert [(x.status, x.superseded) for x in r] == [("LOADED", "participants__2024-12-31.csv")]
    # both summaries name it: a correction changes what earlier nights were built from
    said = ("participants__2024-12-31.csv.gz: its rows replace those loaded from participants__2024-12-31.csv "
            "for the same extract and business date (raw.load_ledger: SUPERSEDED)")
    assert f"  corrected   {said}" in ingest_summary(report) and f"\ncorrected {said}\n" in _dag_summary(report)
    assert sorted(sql("select kpj, monthly_wage_idr from raw.participants")) == [
        ("17000000001", 4_000_000), ("17000000009", 3_000_000)]
    assert sorted(sql("select file_name, status, superseded_by is not null from raw.load_ledger")) == [
        ("participants__2024-12-30.csv", "LOADED", False),
        ("participants__2024-12-31.csv", "SUPERSEDED", True),
        ("participants__2024-12-31.csv.gz", "LOADED", False),
    ]


def test_a_correction_with_no_rows_withdraws_a_file(tmp_path, load, sql):
    """How a data engineer takes back a file sent for the wrong date (README, Ingestion): the
    provider sends a correction holding only the header, and every row of that extract and
    date leaves the raw table, the earlier file recorded as superseded. For a reference the
    earlier snapshot of its years is again the latest."""
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-30.csv",
                   csv_text(PARTICIPANT_HEADER, [participant(kpj="17000000009")]))
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [
        participant(kpj="17000000001"), participant(kpj="17000000002")]))
    write_delivery(landing, "workforce__2024-12-30.csv", "region_code,year,employed,informal_employed\n17,2024,10,5\n")
    write_delivery(landing, "workforce__2024-12-31.csv", "region_code,year,employed,informal_employed\n17,2024,99,9\n")
    load(landing)
    write_delivery(landing, "participants__2024-12-31.csv.gz", PARTICIPANT_HEADER + "\n", row_count=0,
                   produced_at="2025-01-02T08:00:00+07:00")
    write_delivery(landing / "resent", "workforce__2024-12-31.csv", "region_code,year,employed,informal_employed\n",
                   produced_at="2025-01-02T08:00:00+07:00")
    r = load(landing).results
    assert sorted((x.file_name, x.status, x.rows_in_file, x.superseded) for x in r) == [
        ("participants__2024-12-31.csv.gz", "LOADED", 0, "participants__2024-12-31.csv"),
        ("resent/workforce__2024-12-31.csv", "LOADED", 0, "workforce__2024-12-31.csv")]
    assert sql("select kpj from raw.participants") == [("17000000009",)]
    assert sql("select _business_date::varchar, employed from raw.workforce") == [("2024-12-30", 10)]
    assert sorted(sql("select file_name, status from raw.load_ledger where status = 'SUPERSEDED'")) == [
        ("participants__2024-12-31.csv", "SUPERSEDED"), ("workforce__2024-12-31.csv", "SUPERSEDED")]


def test_two_versions_ready_together_the_later_produced_wins(tmp_path, load, sql):
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv.gz", csv_text(PARTICIPANT_HEADER, [
        participant(monthly_wage_idr="5000000")]), produced_at="2025-01-01T09:00:00+07:00")
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]),
                   produced_at="2025-01-01T01:00:00+07:00")
    load(landing)
    assert sql("select monthly_wage_idr from raw.participants") == [(5_000_000,)]


def test_a_produced_at_without_its_offset_is_jakarta_time(tmp_path, load, sql):
    """A time without an offset is WIB: 09:00 is 02:00 UTC, so a file produced at 02:30 UTC is
    the later one (read as UTC, as before 0.3.4, 09:00 would have won)."""
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv.gz", csv_text(PARTICIPANT_HEADER, [
        participant(monthly_wage_idr="5000000")]), produced_at="2025-01-01T09:00:00")
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]),
                   produced_at="2025-01-01T02:30:00+00:00")  # 09:30 WIB: the later one, though "02:30" < "09:00"
    load(landing)
    assert sql("select monthly_wage_idr from raw.participants") == [(3_000_000,)]
    assert sql("select produced_at from raw.load_ledger order by produced_at")[0][0].isoformat() == "2025-01-01T02:00:00"


@pytest.mark.parametrize("runs", ["together", "gz first", "csv first"])
def test_two_versions_produced_at_the_same_time_keep_the_same_one_whatever_the_arrival(tmp_path, load, sql, runs):
    """A tie in produced_at goes to the later name, in one run as across runs: results must
    not depend on arrival order (extracts.md §1)."""
    landing = tmp_path / "in"
    same = "2025-01-01T09:00:00+07:00"
    gz = ("participants__2024-12-31.csv.gz", csv_text(PARTICIPANT_HEADER, [participant(monthly_wage_idr="5000000")]))
    plain = ("participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]))
    order = {"together": [[gz, plain]], "gz first": [[gz], [plain]], "csv first": [[plain], [gz]]}[runs]
    for batch in order:
        for name, text in batch:
            write_delivery(landing, name, text, produced_at=same)
        load(landing)
    assert sql("select monthly_wage_idr from raw.participants") == [(5_000_000,)]


def test_an_older_version_arriving_later_does_not_replace_the_newer(tmp_path, load, sql):
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv.gz", csv_text(PARTICIPANT_HEADER, [
        participant(monthly_wage_idr="5000000")]), produced_at="2025-01-01T09:00:00+07:00")
    load(landing)
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]),
                   produced_at="2025-01-01T01:00:00+07:00")
    report = load(landing)
    assert [r.status for r in report.results] == ["SKIPPED_STALE"]
    assert sql("select monthly_wage_idr from raw.participants") == [(5_000_000,)]
    # the engineer reads both times, in the run's summary as in the DAG's, and no remedy is offered
    detail = ("produced 2024-12-31 18:00 UTC, before the loaded file participants__2024-12-31.csv.gz "
              "(2025-01-01 02:00 UTC), which stays")
    assert report.results[0].reason_detail == detail
    assert f"  stale       participants__2024-12-31.csv: {detail}" in ingest_summary(report)
    assert f"stale participants__2024-12-31.csv: {detail}" in _dag_summary(report)


def _dag_summary(report) -> str:
    """The DAG's summary of a load, from what its ingest task returns."""
    from paritrana.orchestration import file_outcome, summarize
    files = [file_outcome(r) for r in report.results]
    return summarize("night", 2024, dt.date(2024, 12, 31), [{"files": files, "rows": {}}], None, None, None)


def test_a_version_produced_in_the_future_is_loaded_flagged_and_its_remedy_told(tmp_path, load, sql):
    """A provider's wrong clock (a produced_at in 2099) wins over every true correction that
    follows, since versions are ordered by produced_at (extracts.md §1). That is the
    contract; what the product adds is saying so, at the load and at each skip, with the way
    out: the correction sent again with a later produced_at."""
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]),
                   produced_at="2099-01-01T09:00:00+07:00")
    first = load(landing)
    ahead = ("participants__2024-12-31.csv: produced_at 2099-01-01 02:00 UTC is later than its load: a correction "
             "of this extract and date replaces it only with a later produced_at still")
    assert [(r.status, r.ahead) for r in first.results] == [("LOADED", [ahead.split(": ", 1)[1]])]
    assert f"  ahead       {ahead}" in ingest_summary(first) and f"ahead {ahead}" in _dag_summary(first)
    assert "produced_at 2099-01-01 02:00 UTC is later than its load" in describe(first.results[0])

    fixed = csv_text(PARTICIPANT_HEADER, [participant(monthly_wage_idr="5000000")])
    write_delivery(landing, "participants__2024-12-31.csv.gz", fixed, produced_at="2025-01-02T08:00:00+07:00")
    skipped = load(landing).results
    assert [r.status for r in skipped] == ["SKIPPED_STALE"]
    assert sql("select monthly_wage_idr from raw.participants") == [(3_000_000,)]
    loaded_at = sql("select started_at from raw.load_ledger where status = 'LOADED'")[0][0]
    assert skipped[0].reason_detail.endswith(
        f"which stays; that file's produced_at is later than its own load ({loaded_at:%Y-%m-%d %H:%M} UTC), a wrong "
        "clock at the provider? To replace it, send this file again with a produced_at after 2099-01-01 02:00 UTC")

    write_delivery(landing, "participants__2024-12-31.csv.gz", fixed, produced_at="2099-01-02T00:00:00+07:00")
    assert [(r.status, r.superseded) for r in load(landing).results] == [
        ("LOADED", "participants__2024-12-31.csv")]
    assert sql("select monthly_wage_idr from raw.participants") == [(5_000_000,)]


def test_a_clock_a_little_fast_is_not_flagged(tmp_path, load):
    now = dt.datetime.now(dt.timezone.utc)
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]),
                   produced_at=(now + dt.timedelta(minutes=30)).isoformat())
    report = load(landing)
    assert [(r.status, r.ahead) for r in report.results] == [("LOADED", [])]
    assert not any(line.startswith("  ahead") for line in ingest_summary(report))


def test_a_business_date_to_come_is_loaded_and_flagged(tmp_path, load):
    """A file named for a day after its load (2099-01-01 for 2025-01-01) is within the
    contract, and its rows count from that day on; but it is almost surely a wrong name, and
    it would hide that the deltas end before an as-of date. The summaries say so; the next
    Jakarta day, which may still be tomorrow in UTC, is not flagged."""
    landing = tmp_path / "in"
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    for day in ("2099-01-01", tomorrow.isoformat()):
        write_delivery(landing, f"participants__{day}.csv", csv_text(PARTICIPANT_HEADER, [participant()]))
    report = load(landing)
    today = dt.datetime.now(dt.timezone.utc).date()
    assert sorted((r.file_name, r.status, r.ahead) for r in report.results) == [
        (f"participants__{tomorrow}.csv", "LOADED", []),
        ("participants__2099-01-01.csv", "LOADED", [f"business date 2099-01-01 is after its load ({today}): a file "
                                                    "named for a day to come? Its rows count from that day on"])]
    assert [line.split(":")[0] for line in ingest_summary(report) if line.startswith("  ahead")] == [
        "  ahead       participants__2099-01-01.csv"]
    assert "ahead participants__2099-01-01.csv: business date 2099-01-01 is after" in _dag_summary(report)


def test_arrival_order_does_not_change_the_tables(tmp_path, home, load, sql):
    gen = tmp_path / "gen"
    generate(gen, "demo", scale=0.2, days_after=3)
    load(gen)
    all_at_once = _contents(sql)

    # Second warehouse: the same files arrive newest first, one business date per run.
    from paritrana.settings import resolve_home
    from paritrana.warehouse import writer
    from ingestion.loader import ingest
    from conftest import KEY
    import duckdb

    other = resolve_home(tmp_path / "home2")
    landing = tmp_path / "arrivals"
    landing.mkdir()
    files = sorted((p for p in gen.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: (p.name.split("__")[1][:10], "resent" in p.parts, "gz" in p.name), reverse=True)
    by_date: dict[str, list] = {}
    for p in files:
        by_date.setdefault(p.name.split("__")[1][:10], []).append(p)
    for date in sorted(by_date, reverse=True):
        for p in by_date[date]:
            target = landing / p.relative_to(gen)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, target)
        with writer(other) as con:
            ingest(con, landing, KEY, f"arrival-{date}")

    def sql2(q):
        con = duckdb.connect(str(other.warehouse), read_only=True)
        try:
            return con.execute(q).fetchall()
        finally:
            con.close()
    assert _contents(sql2) == all_at_once


@pytest.mark.parametrize("setting", ["", "keep"])
def test_a_corrections_quarantine_replaces_the_superseded_files_whatever_the_arrival(tmp_path, monkeypatch, setting):
    """A correction replaces every row the earlier file contributed (extracts.md §1), its
    quarantined rows too, so the quarantine, like the raw tables, depends on versions and
    not on arrival: a version that arrives after its correction is skipped and never
    quarantined. PARITRANA_SUPERSEDED_QUARANTINE=keep keeps them, as before 0.3.10."""
    import duckdb

    from conftest import KEY
    from ingestion.loader import ingest
    from paritrana.settings import resolve_home
    from paritrana.warehouse import writer

    monkeypatch.setenv("PARITRANA_SUPERSEDED_QUARANTINE", setting)
    files = {"original": ("participants__2024-12-31.csv", [participant(kpj="17000000001", gender="X"),
                                                            participant(kpj="17000000002", gender="X"),
                                                            participant(kpj="17000000003")], "2025-01-01T01:00:00+07:00"),
             "correction": ("participants__2024-12-31.csv.gz", [participant(kpj="17000000001"),
                                                                participant(kpj="17000000002", segment="ASN"),
                                                                participant(kpj="17000000003")],
                            "2025-01-02T01:00:00+07:00")}
    kept = {}
    for order in (("original", "correction"), ("correction", "original")):
        home = resolve_home(tmp_path / "-".join(order))
        for n, which in enumerate(order):
            name, rows, produced_at = files[which]
            write_delivery(tmp_path / "-".join(order) / "in", name, csv_text(PARTICIPANT_HEADER, rows),
                           produced_at=produced_at)
            with writer(home) as con:
                ingest(con, tmp_path / "-".join(order) / "in", KEY, f"night-{n}")
        with duckdb.connect(str(home.warehouse), read_only=True) as con:
            kept[order] = sorted(con.execute("select file_name, line, reason_details from raw.quarantine").fetchall())
            assert con.execute("select count(*) from raw.participants").fetchall() == [(2,)]
    correction = [("participants__2024-12-31.csv.gz", 3, ["NOT_IN_SET:segment"])]
    assert kept[("correction", "original")] == correction
    if setting == "keep":
        assert kept[("original", "correction")] == sorted(correction + [
            ("participants__2024-12-31.csv", 2, ["NOT_IN_SET:gender"]),
            ("participants__2024-12-31.csv", 3, ["NOT_IN_SET:gender"])])
    else:
        assert kept[("original", "correction")] == correction


def test_an_unknown_superseded_quarantine_setting_is_refused_before_loading(tmp_path, load, sql, monkeypatch):
    monkeypatch.setenv("PARITRANA_SUPERSEDED_QUARANTINE", "archive")
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]))
    with pytest.raises(ValueError, match="PARITRANA_SUPERSEDED_QUARANTINE must be one of drop, keep"):
        load(tmp_path / "in")
