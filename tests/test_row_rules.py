"""Every row rule of extracts.md §2–3 quarantines with its reason code, and only it."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from ingestion.loader import FileResult, ingest
from ingestion.rules import sql_str
from paritrana.settings import resolve_home
from paritrana.warehouse import writer

from conftest import KEY, PARTICIPANT_HEADER, csv_text, participant, write_control, write_delivery

# (overrides of a valid participant, expected `CODE:column` details)
PARTICIPANT_CASES = [
    ({}, []),
    ({"kpj": "1701234567"}, ["BAD_FORMAT:kpj"]),
    ({"kpj": ""}, ["MISSING_VALUE:kpj"]),
    ({"nik": "17710145089000"}, ["BAD_FORMAT:nik"]),
    ({"nik": ""}, ["MISSING_VALUE:nik"]),
    ({"full_name": ""}, ["MISSING_VALUE:full_name"]),
    ({"birth_date": "1990-02-30"}, ["BAD_TYPE:birth_date"]),
    ({"birth_date": "05/08/1990"}, ["BAD_TYPE:birth_date"]),
    ({"birth_date": "1929-12-31"}, ["OUT_OF_RANGE:birth_date"]),
    ({"birth_date": "2025-01-01"}, ["OUT_OF_RANGE:birth_date"]),
    ({"gender": "F"}, ["NOT_IN_SET:gender"]),
    ({"segment": "ASN"}, ["NOT_IN_SET:segment"]),
    ({"npp": ""}, ["MISSING_VALUE:npp", "INCONSISTENT:funding"]),
    ({"npp": "bk000123"}, ["BAD_FORMAT:npp"]),
    ({"segment": "BPU", "funding": "SELF", "jp": "0", "occupation": "PETANI"}, ["INCONSISTENT:npp"]),
    ({"region_code": "17"}, ["BAD_FORMAT:region_code"]),
    ({"occupation": "DOKTER"}, ["NOT_IN_SET:occupation"]),
    ({"funding": "APBN"}, ["NOT_IN_SET:funding"]),
    ({"funding": "APBD"}, ["MISSING_VALUE:funder_code"]),
    ({"funding": "APBD", "funder_code": "17"}, []),
    ({"funding": "APBD", "funder_code": "17.71"}, []),
    ({"funding": "APBD", "funder_code": "BK000123"}, ["BAD_FORMAT:funder_code"]),
    ({"funding": "APBDES", "funder_code": "17"}, ["BAD_FORMAT:funder_code"]),
    ({"funding": "CSR", "funder_code": "BK000999"}, []),
    ({"funding": "CSR", "funder_code": "17.71"}, ["BAD_FORMAT:funder_code"]),
    ({"funder_code": "17.71"}, ["INCONSISTENT:funder_code"]),
    ({"jkk": "2"}, ["BAD_TYPE:jkk"]),
    ({"jkm": "yes"}, ["BAD_TYPE:jkm"]),
    ({"jkk": "0"}, ["INCONSISTENT:jkk"]),
    ({"jkk": "0", "status": "INACTIVE"}, []),
    ({"segment": "JAKON", "jp": "1"}, ["INCONSISTENT:jp"]),
    ({"monthly_wage_idr": "-1"}, ["OUT_OF_RANGE:monthly_wage_idr"]),
    ({"monthly_wage_idr": "3.5e6"}, ["BAD_TYPE:monthly_wage_idr"]),
    ({"status": "active"}, ["NOT_IN_SET:status"]),
    ({"effective_date": "1999-12-31"}, ["OUT_OF_RANGE:effective_date"]),
    ({"effective_date": "2025-01-01"}, ["OUT_OF_RANGE:effective_date"]),
    ({"segment": "BPU", "npp": "", "funding": "EMPLOYER", "jp": "0"}, ["INCONSISTENT:funding"]),
    # A conditional rule does not judge an invalid value: no INCONSISTENT on top of NOT_IN_SET.
    ({"segment": "XX", "jp": "1"}, ["NOT_IN_SET:segment"]),
    ({"status": "X", "jkk": "0"}, ["NOT_IN_SET:status"]),
]


def _quarantine_by_line(sql):
    return {line: sorted(d) for line, d in sql("select line, reason_details from raw.quarantine")}


def test_participant_rules(tmp_path, load, sql):
    rows = [participant(kpj=f"170123{i:05d}", **{k: v for k, v in o.items() if k != "kpj"})
            if "kpj" not in o else participant(**o) for i, (o, _) in enumerate(PARTICIPANT_CASES)]
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, rows))
    report = load(tmp_path / "in")
    got = _quarantine_by_line(sql)
    for i, (overrides, expected) in enumerate(PARTICIPANT_CASES):
        assert got.get(i + 2, []) == sorted(expected), (overrides, got.get(i + 2))
    r = report.results[0]
    assert r.rows_loaded == sum(1 for _, e in PARTICIPANT_CASES if not e)
    assert r.rows_quarantined == sum(1 for _, e in PARTICIPANT_CASES if e)
    codes = sql("select distinct unnest(reason_codes) from raw.quarantine")
    assert {"MISSING_VALUE", "BAD_TYPE", "BAD_FORMAT", "NOT_IN_SET", "OUT_OF_RANGE", "INCONSISTENT"} == \
        {c for (c,) in codes}


CLAIM_HEADER = "claim_id,claim_version,kpj,npp,region_code,program,benefit_type,submitted_date,status,paid_date,amount_idr"


def claim(**o) -> dict:
    row = dict(claim_id="C202400000001", claim_version="2", kpj="17012345678", npp="BK000123", region_code="17.71",
               program="JKM", benefit_type="DEATH_BENEFIT", submitted_date="2024-11-01", status="PAID",
               paid_date="2024-11-20", amount_idr="42000000")
    row.update(o)
    return row


CLAIM_CASES = [
    ({}, []),
    ({"claim_id": "C20240000001"}, ["BAD_FORMAT:claim_id"]),
    ({"claim_version": "0"}, ["OUT_OF_RANGE:claim_version"]),
    ({"npp": ""}, []),
    ({"program": "JKN"}, ["NOT_IN_SET:program"]),
    ({"program": "JHT"}, ["INCONSISTENT:benefit_type"]),
    ({"program": "JKK", "benefit_type": "SCHOLARSHIP"}, []),
    ({"program": "JP", "benefit_type": "PENSION"}, []),
    ({"submitted_date": "2025-01-02"}, ["OUT_OF_RANGE:submitted_date"]),
    ({"paid_date": ""}, ["MISSING_VALUE:paid_date"]),
    ({"paid_date": "2024-10-01"}, ["OUT_OF_RANGE:paid_date"]),
    ({"paid_date": "2025-01-05"}, ["OUT_OF_RANGE:paid_date"]),
    ({"amount_idr": "0"}, ["OUT_OF_RANGE:amount_idr"]),
    ({"amount_idr": ""}, ["MISSING_VALUE:amount_idr"]),
    ({"status": "SUBMITTED"}, ["INCONSISTENT:paid_date"]),
    ({"status": "SUBMITTED", "paid_date": "", "amount_idr": ""}, []),
    ({"status": "REJECTED", "paid_date": "", "amount_idr": "0"}, []),
]


def test_quoted_empty_field_is_empty(tmp_path, load, sql):
    # `""` is as empty as nothing between the commas (RFC 4180 quoting of an empty value).
    rows = csv_text(PARTICIPANT_HEADER, [participant(kpj="17012300001"), participant(kpj="17012300002")])
    lines = rows.splitlines()
    lines[1] = lines[1].replace("17012300001", '""', 1)
    lines[2] = '"' + '","'.join(lines[2].split(",")) + '"'  # every field quoted: still valid
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", "\n".join(lines) + "\n")
    r = load(tmp_path / "in").results[0]
    assert (r.rows_loaded, r.rows_quarantined) == (1, 1)
    assert _quarantine_by_line(sql) == {2: ["MISSING_VALUE:kpj"]}


def test_claim_rules_and_key_conflict(tmp_path, load, sql):
    rows = [claim(claim_id=f"C2024{i:08d}", **{k: v for k, v in o.items() if k != "claim_id"})
            if "claim_id" not in o else claim(**o) for i, (o, _) in enumerate(CLAIM_CASES)]
    # Two different rows for one (claim_id, claim_version): both quarantined.
    rows += [claim(claim_id="C202499999999", amount_idr="1000"), claim(claim_id="C202499999999", amount_idr="2000")]
    # The same pair on two versions is no conflict.
    rows += [claim(claim_id="C202488888888", claim_version="1", status="SUBMITTED", paid_date="", amount_idr=""),
             claim(claim_id="C202488888888", claim_version="2")]
    write_delivery(tmp_path / "in", "claims__2024-12-31.csv", csv_text(CLAIM_HEADER, rows))
    load(tmp_path / "in")
    got = _quarantine_by_line(sql)
    for i, (o, expected) in enumerate(CLAIM_CASES):
        assert got.get(i + 2, []) == sorted(expected), (o, got.get(i + 2))
    n = len(CLAIM_CASES)
    assert got[n + 2] == got[n + 3] == ["KEY_CONFLICT:claim_id,claim_version"]
    assert n + 4 not in got and n + 5 not in got


def test_key_conflict_is_judged_on_values_not_text(tmp_path, load, sql):
    # "01" and "1" are one claim_version: the two rows conflict though no two texts repeat.
    rows = [claim(claim_id="C202477777777", claim_version="1"), claim(claim_id="C202477777777", claim_version="01"),
            claim(claim_id="C202466666666")]
    write_delivery(tmp_path / "in", "claims__2024-12-31.csv", csv_text(CLAIM_HEADER, rows))
    r = load(tmp_path / "in").results[0]
    assert (r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (1, 2, 0)
    assert _quarantine_by_line(sql) == {2: ["KEY_CONFLICT:claim_id,claim_version"],
                                        3: ["KEY_CONFLICT:claim_id,claim_version"]}


def test_claims_without_optional_npp_column(tmp_path, load, sql):
    header = CLAIM_HEADER.replace("npp,", "")
    write_delivery(tmp_path / "in", "claims__2024-12-31.csv", csv_text(header, [claim()]))
    report = load(tmp_path / "in")
    assert report.results[0].status == "LOADED" and report.results[0].rows_loaded == 1
    assert sql("select npp from raw.claims") == [(None,)]


CONTRIB_HEADER = "npp,period_month,workers_billed,billed_idr,paid_idr,paid_date"


def test_contribution_rules(tmp_path, load, sql):
    base = dict(npp="BK000123", workers_billed="10", billed_idr="1000000", paid_idr="1000000", paid_date="2024-11-10")
    cases = [
        (dict(period_month="2024-10"), []),
        (dict(period_month="2024-13"), ["BAD_FORMAT:period_month"]),
        (dict(period_month="2024-09", paid_date=""), ["MISSING_VALUE:paid_date"]),
        (dict(period_month="2024-08", paid_idr="500", paid_date="2024-09-01"), ["INCONSISTENT:paid_date"]),
        (dict(period_month="2024-07", paid_idr="500", paid_date=""), []),
        (dict(period_month="2024-06", paid_date="2025-01-01"), ["OUT_OF_RANGE:paid_date"]),
        (dict(period_month="2024-05", billed_idr="-1"), ["OUT_OF_RANGE:billed_idr"]),
        (dict(period_month="2024-04"), []),
        (dict(period_month="2024-04", workers_billed="11"), []),
    ]
    rows = [{**base, **o} for o, _ in cases]
    write_delivery(tmp_path / "in", "contributions__2024-12-31.csv", csv_text(CONTRIB_HEADER, rows))
    load(tmp_path / "in")
    got = _quarantine_by_line(sql)
    for i, (o, expected) in enumerate(cases[:-2]):
        assert got.get(i + 2, []) == sorted(expected), (o, got.get(i + 2))
    # The key (npp, period_month) is unique per file: both rows of 2024-04 are quarantined.
    assert got[len(cases)] == got[len(cases) + 1] == ["KEY_CONFLICT:npp,period_month"]


def test_reference_rules(tmp_path, load, sql):
    landing = tmp_path / "in"
    write_delivery(landing, "regions__2024-12-31.csv", csv_text("region_code,name,level,parent_code", [
        dict(region_code="17", name="Bengkulu", level="PROVINSI"),
        dict(region_code="17.71", name="Kota Bengkulu", level="KOTA", parent_code="17"),
        dict(region_code="17.01", name="X", level="KABUPATEN", parent_code="18"),
        dict(region_code="17.02", name="Y", level="PROVINSI"),
        dict(region_code="18", name="Lampung", level="PROVINSI", parent_code="18"),
        dict(region_code="17.03", name="Z", level="KABUPATEN"),
    ]))
    write_delivery(landing, "workforce__2024-12-31.csv", csv_text("region_code,year,employed,informal_employed", [
        dict(region_code="17", year="2024", employed="100", informal_employed="60"),
        dict(region_code="17.71", year="2024", employed="100", informal_employed="101"),
        dict(region_code="17.01", year="2014", employed="0", informal_employed="0"),
    ]))
    write_delivery(landing, "pemda_assessment__2024-12-31.csv", csv_text(
        "region_code,year,has_regulation,apbd_allocation_idr,non_asn_headcount,innovation_score", [
            dict(region_code="17", year="2024", has_regulation="1", apbd_allocation_idr="5", non_asn_headcount="3",
                 innovation_score="75.5"),
            dict(region_code="17.71", year="2024", has_regulation="1", apbd_allocation_idr="5",
                 non_asn_headcount="3", innovation_score="100.5"),
        ]))
    load(landing)
    q = {(f.split("__")[0], line): sorted(d) for f, line, d in
         sql("select file_name, line, reason_details from raw.quarantine")}
    assert ("regions", 2) not in q and ("regions", 3) not in q
    assert q[("regions", 4)] == ["INCONSISTENT:parent_code"]
    assert q[("regions", 5)] == ["INCONSISTENT:level"]
    assert q[("regions", 6)] == ["INCONSISTENT:parent_code"]
    assert q[("regions", 7)] == ["MISSING_VALUE:parent_code"]
    assert q[("workforce", 3)] == ["OUT_OF_RANGE:informal_employed"]
    assert q[("workforce", 4)] == ["OUT_OF_RANGE:employed", "OUT_OF_RANGE:year"]
    assert q[("pemda_assessment", 3)] == ["OUT_OF_RANGE:innovation_score"]
    assert sql("select innovation_score from raw.pemda_assessment") == [(75.5,)]


@pytest.mark.parametrize("ext, last_newline", [("csv", True), ("csv", False), ("csv.gz", True)])
def test_line_numbers_follow_quoted_line_breaks(tmp_path, load, sql, ext, last_newline):
    rows = [participant(kpj="17000000001", full_name="Siti\nAminah"),
            participant(kpj="17000000002", full_name="Budi\n\nSantoso"),
            participant(kpj="bad", full_name="Ani")]
    text = csv_text(PARTICIPANT_HEADER, rows)
    # Without the last line break a file's count of breaks is one lower: the loader's
    # shortcut for files whose records are all one line must still not be taken.
    write_delivery(tmp_path / "in", f"participants__2024-12-31.{ext}", text if last_newline else text[:-1],
                   row_count=3)
    load(tmp_path / "in")
    # header line 1; record 1 on lines 2-3; record 2 on lines 4-6; record 3 on line 7.
    assert sql("select line from raw.quarantine") == [(7,)]
    assert sorted(sql("select _line from raw.participants")) == [(2,), (4,)]


@pytest.mark.parametrize("ext, newline, stage_max_rows", [
    ("csv", "\n", "3000000"), ("csv", "\r\n", "3000000"), ("csv.gz", "\n", "3000000"), ("csv.gz", "\r\n", "3000000"),
    ("csv", "\n", "0"),  # staged in the warehouse: the stage becomes the raw table
])
def test_empty_lines_between_records_still_count_in_line_numbers(tmp_path, load, sql, monkeypatch,
                                                                 ext, newline, stage_max_rows):
    """The reader skips an empty line, as most CSV readers do; the lines of the records
    after it are still physical (extracts.md §2)."""
    monkeypatch.setenv("PARITRANA_TEMP_STAGE_MAX_ROWS", stage_max_rows)
    rows = [participant(kpj=f"1700000000{i}") for i in range(6)]
    rows[2]["full_name"] = "Siti\nAminah"  # a quoted line break as well
    rows[4]["gender"] = "X"
    header, *records = csv_text(PARTICIPANT_HEADER, rows).rstrip("\n").split("\n")
    r0, r1, r2a, r2b, r3, r4, r5 = records
    lines = [header, r0, "", r1, r2a, r2b, r3, "", "", r4, r5, "", ""]
    text = newline.join(lines).replace(f"Siti{newline}Aminah", "Siti\nAminah")
    write_delivery(tmp_path / "in", f"participants__2024-12-31.{ext}", text, row_count=6)
    r = load(tmp_path / "in").results[0]
    assert (r.status, r.rows_loaded, r.rows_quarantined) == ("LOADED", 5, 1)
    assert sql("select line from raw.quarantine") == [(10,)]
    assert sql("select kpj, _line from raw.participants order by kpj") == [
        ("17000000000", 2), ("17000000001", 4), ("17000000002", 5), ("17000000003", 7), ("17000000005", 11)]


def test_empty_lines_and_a_quote_rfc_4180_forbids_leave_lines_unknown_so_the_file_is_refused(tmp_path, load, sql):
    header, r0, r1 = csv_text(PARTICIPANT_HEADER, [participant(kpj=f"1700000000{i}") for i in range(2)]).split("\n")[:3]
    text = "\n".join([header, r0.replace("Siti", 'Si"ti'), "", r1]) + "\n"  # a quote inside an unquoted field
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", text, row_count=2)
    r = load(tmp_path / "in").results[0]
    assert (r.status, r.reason_code) == ("REJECTED", "UNREADABLE")
    assert "leave the records' lines unknown" in r.reason_detail
    assert sql("select count(*) from raw.participants") == [(0,)]


def test_exact_duplicates_dropped_before_key_conflicts(tmp_path, load, sql):
    a, b = claim(), claim(amount_idr="1")
    write_delivery(tmp_path / "in", "claims__2024-12-31.csv", csv_text(CLAIM_HEADER, [a, a, a]))
    write_delivery(tmp_path / "in", "claims__2024-12-30.csv", csv_text(CLAIM_HEADER, [a, a, b]))
    report = load(tmp_path / "in")
    by_date = {r.business_date.isoformat(): r for r in report.results}
    clean = by_date["2024-12-31"]
    assert (clean.rows_loaded, clean.rows_quarantined, clean.rows_duplicate) == (1, 0, 2)
    conflict = by_date["2024-12-30"]
    assert (conflict.rows_loaded, conflict.rows_quarantined, conflict.rows_duplicate) == (0, 2, 1)


def test_reconciliation_on_every_file(tmp_path, load, sql):
    from paritrana.generator import generate
    generate(tmp_path / "in", "demo", scale=0.3, days_after=2)
    load(tmp_path / "in")
    bad = sql("""
        select l.file_name from raw.load_ledger l
        left join (select load_id, count(*) n from raw.quarantine group by all) q using (load_id)
        where l.status in ('LOADED', 'SUPERSEDED')
          and (l.rows_in_file <> l.rows_loaded + l.rows_quarantined + l.rows_duplicate
               or coalesce(q.n, 0) <> l.rows_quarantined)""")
    assert bad == []
    # Loaded rows in the raw tables match the ledger for every file still current.
    for extract, loaded in sql("select extract, sum(rows_loaded) from raw.load_ledger where status = 'LOADED' group by 1"):
        assert sql(f"select count(*) from raw.{extract}") == [(loaded,)], extract


def deliver_as(tmp_path, stem: str, ext: str, text: str, row_count: int, types: dict | None = None) -> None:
    """Deliver CSV text as `<stem>.csv`, or as `<stem>.parquet` with every column text
    but those given SQL `types`."""
    if ext == "parquet":
        import duckdb
        (tmp_path / "src.csv").write_text(text)
        target = tmp_path / "src.parquet"
        casts = ", ".join(f"cast({c} as {t}) as {c}" for c, t in (types or {}).items())
        select = f"select * {f'replace ({casts})' if casts else ''} from read_csv('{tmp_path / 'src.csv'}', all_varchar = true)"
        duckdb.sql(f"copy ({select}) to '{target}' (format parquet)")
        write_delivery(tmp_path / "in", f"{stem}.parquet", target.read_bytes(), row_count=row_count)
    else:
        write_delivery(tmp_path / "in", f"{stem}.csv", text)


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_key_conflict_rows_keep_their_delivered_content(tmp_path, load, sql, ext):
    # Rows whose only fault is the conflict were valid during the scan: their content is
    # read back from the file, in CSV by record number, in Parquet by file row number.
    rows = [claim(claim_id="C202400000001"), claim(claim_id="C202499999999", amount_idr="1000"),
            claim(claim_id="C202499999999", amount_idr="2000", benefit_type="PENSION")]
    deliver_as(tmp_path, "claims__2024-12-31", ext, csv_text(CLAIM_HEADER, rows), len(rows))
    load(tmp_path / "in")
    header = 1 if ext == "csv" else 0  # a Parquet row's "line" is its row number
    got = {line + 1 - header: (sorted(d), json.loads(c)) for line, d, c in
           sql("select line, reason_details, content from raw.quarantine")}
    assert sorted(got) == [3, 4]
    assert got[3][0] == ["KEY_CONFLICT:claim_id,claim_version"]
    assert got[4][0] == ["INCONSISTENT:benefit_type", "KEY_CONFLICT:claim_id,claim_version"]
    assert got[3][1] == {k: (v or None) for k, v in rows[1].items()}
    assert got[4][1] == {k: (v or None) for k, v in rows[2].items()}
    assert sql("select claim_id, _line from raw.claims") == [("C202400000001", 1 + header)]


def test_duplicates_of_a_quarantined_row_are_counted_once(tmp_path, load, sql):
    bad = participant(kpj="bad")
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv",
                   csv_text(PARTICIPANT_HEADER, [participant(), bad, bad, bad]))
    r = load(tmp_path / "in").results[0]
    assert (r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (1, 1, 2)
    assert sql("select line from raw.quarantine") == [(3,)]


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_records_differing_only_in_personal_fields_are_not_duplicates(tmp_path, load, sql, ext):
    # The fingerprint is the key and version (kpj, effective_date), so these rows share it;
    # the records are read again and compared whole, personal fields as their token and
    # keyed digest, the others as delivered.
    a = participant()
    other_name, other_nik = participant(full_name="Siti Aminah Putri"), participant(nik="1771014508900004")
    other_wage = participant(monthly_wage_idr="3000001")
    rows = [a, other_name, a, other_nik, other_name, a, participant(nik=""), other_wage]
    deliver_as(tmp_path, "participants__2024-12-31", ext, csv_text(PARTICIPANT_HEADER, rows), len(rows))
    r = load(tmp_path / "in").results[0]
    # a at records 1, 3, 6; other_name at 2, 5; other_nik at 4; a missing NIK at 7; other_wage at 8
    assert (r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (4, 1, 3)
    header = 1 if ext == "csv" else 0
    assert sorted(line for (line,) in sql("select _line from raw.participants")) == [
        1 + header, 2 + header, 4 + header, 8 + header]
    assert sql("select line from raw.quarantine") == [(7 + header,)]
    assert sql("select count(distinct nik_token) from raw.participants") == [(2,)]


def test_large_file_stage_in_the_warehouse_gives_the_same_load(tmp_path, monkeypatch):
    """Files above PARITRANA_TEMP_STAGE_MAX_ROWS are staged in a compressed table of the
    warehouse instead of a temporary one; the first into an empty raw table becomes that
    table, later ones are inserted. Same rows, line numbers and quarantine either way,
    and no stage left behind."""
    from conftest import KEY
    from ingestion import loader
    from paritrana.settings import resolve_home
    from paritrana.warehouse import writer

    landing = tmp_path / "in"
    a = claim()
    write_delivery(landing, "claims__2024-12-31.csv", csv_text(CLAIM_HEADER, [
        a, a, claim(claim_id="C202499999999"), claim(claim_id="C202499999999", amount_idr="7"),
        claim(claim_version="0")]))
    # The second claims file goes into a table that is no longer empty.
    write_delivery(landing, "claims__2025-01-01.csv", csv_text(CLAIM_HEADER, [
        claim(claim_id="C202500000001", claim_version="1\n2"), claim(claim_id="C202500000002"),
        claim(claim_id="C202500000003")]), row_count=3)
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [
        participant(kpj="17000000001", full_name="Siti\nAminah"), participant(kpj="bad"),
        participant(kpj="17000000003")]), row_count=3)

    def load(max_rows):
        monkeypatch.setenv(loader.TEMP_STAGE_MAX_ROWS_ENV, str(max_rows))
        with writer(resolve_home(str(tmp_path / f"home{max_rows}"))) as con:
            report = loader.ingest(con, landing, KEY, "t")
            tables = con.execute("select schema_name, table_name from duckdb_tables() "
                                 "where schema_name <> 'raw' or table_name like '\\_%' escape '\\'").fetchall()
            state = [con.execute(q).fetchall() for q in (
                "select * exclude (_load_id) from raw.claims order by all",
                "select * exclude (_load_id) from raw.participants order by all",
                "select file_name, line, reason_details, content from raw.quarantine order by all")]
            columns = con.execute("select table_name, column_name, data_type from information_schema.columns "
                                  "where table_schema = 'raw' order by all").fetchall()
        return [(r.rows_loaded, r.rows_quarantined, r.rows_duplicate) for r in report.results], tables, state, columns

    in_memory, persistent = load(10**9), load(0)
    assert persistent == in_memory
    assert in_memory[0] == [(1, 3, 1), (2, 1, 0), (2, 1, 0)]
    assert in_memory[1] == []  # no stage left, temporary or in the warehouse
    # Line numbers follow the quoted line breaks, in the table the stage became (the
    # participants) as in the one it was inserted into (the second claims file).
    assert sorted(row[-1] for row in in_memory[2][0]) == [2, 4, 5]
    assert sorted(row[-1] for row in in_memory[2][1]) == [2, 5]
    assert sorted((f, line) for f, line, *_ in in_memory[2][2]) == [
        ("claims__2024-12-31.csv", 4), ("claims__2024-12-31.csv", 5), ("claims__2024-12-31.csv", 6),
        ("claims__2025-01-01.csv", 2), ("participants__2024-12-31.csv", 4)]


def test_shortcut_for_one_line_records_is_taken_only_when_the_line_breaks_prove_it(tmp_path):
    """Counting the file's line breaks while hashing it spares finding them in every
    record; it must only be believed when the count leaves no room for a quoted one."""
    from ingestion.deliveries import file_digest, parse_name, read_control, scan_landing
    from ingestion.sources import single_line_records

    plain = csv_text(PARTICIPANT_HEADER, [participant(kpj="17000000001"), participant(kpj="17000000002")])
    quoted = csv_text(PARTICIPANT_HEADER, [participant(kpj="17000000001", full_name="Siti\nAminah")])
    write_delivery(tmp_path, "participants__2024-12-01.csv", plain, row_count=2)
    write_delivery(tmp_path, "participants__2024-12-02.csv", plain[:-1], row_count=2)
    write_delivery(tmp_path, "participants__2024-12-03.csv", quoted, row_count=1)
    write_delivery(tmp_path, "participants__2024-12-04.csv", quoted[:-1], row_count=1)
    write_delivery(tmp_path, "participants__2024-12-05.csv.gz", plain, row_count=2)  # counted in its text
    write_delivery(tmp_path, "participants__2024-12-06.csv.gz", quoted, row_count=1)
    (tmp_path / "participants__2024-12-07.csv.gz").write_bytes(b"\x1f\x8b not gzip")  # the reader rejects it
    write_control(tmp_path / "participants__2024-12-07.csv.gz", 2)
    write_delivery(tmp_path, "participants__2024-12-08.csv", plain + "\r\n\n", row_count=2)  # empty lines at the end
    head, first, second = plain.splitlines()
    write_delivery(tmp_path, "participants__2024-12-09.csv", f"{head}\n{first}\n\n{second}\n", row_count=2)
    taken = {}
    for d in scan_landing(tmp_path).ready:
        parse_name(d)
        read_control(d)
        d.digest = file_digest(d.path, d.ext == "csv.gz")
        taken[d.name[14:24]] = single_line_records(d)
    assert taken == {"2024-12-01": True, "2024-12-02": True, "2024-12-03": False, "2024-12-04": False,
                     "2024-12-05": True, "2024-12-06": False, "2024-12-07": False, "2024-12-08": True,
                     "2024-12-09": False}


@pytest.mark.parametrize("types", [None, {"workers_billed": "BIGINT", "billed_idr": "INTEGER", "paid_idr": "BIGINT",
                                          "paid_date": "DATE"}])
def test_typed_parquet_columns_are_judged_as_their_text(tmp_path, load, sql, types):
    """A Parquet file's integers and dates are taken as they are, not through text, and
    must still give what their text gives in a CSV file: same codes, same values."""
    base = dict(npp="BK000123", workers_billed="10", billed_idr="1000000", paid_idr="1000000", paid_date="2024-11-10")
    cases = [
        (dict(period_month="2024-10"), []),
        (dict(period_month="2024-09", workers_billed="1000000000000000000"), ["BAD_TYPE:workers_billed"]),
        (dict(period_month="2024-08", workers_billed="-999999999999999999"), ["OUT_OF_RANGE:workers_billed"]),
        (dict(period_month="2024-07", billed_idr="-1"), ["OUT_OF_RANGE:billed_idr"]),
        (dict(period_month="2024-06", paid_date="0999-12-31"), []),
        (dict(period_month="2024-05", paid_date="10000-01-01"), ["BAD_TYPE:paid_date"]),
        (dict(period_month="2024-04", paid_idr="", paid_date=""), ["MISSING_VALUE:paid_idr"]),
        (dict(period_month="2024-03", paid_idr="5", paid_date="2024-11-10"), ["INCONSISTENT:paid_date"]),
    ]
    text = csv_text(CONTRIB_HEADER, [{**base, **o} for o, _ in cases])
    got = {}
    for ext in ("csv", "parquet"):
        home = tmp_path / ext
        home.mkdir()
        day = "2024-12-31" if ext == "csv" else "2024-12-30"  # two loads, neither a correction of the other
        deliver_as(home, f"contributions__{day}", ext, text, len(cases), types if ext == "parquet" else None)
        load(home / "in")
        header = 1 if ext == "csv" else 0
        got[ext] = ({line + 1 - header: sorted(d) for line, d in
                     sql("select line, reason_details from raw.quarantine where file_name like ?", [f"%.{ext}"])},
                    sorted(sql("select period_month, workers_billed, billed_idr, paid_idr, paid_date "
                               "from raw.contributions where _load_id in (select load_id from raw.load_ledger "
                               "where file_name like ?)", [f"%.{ext}"])))
    assert got["parquet"] == got["csv"]
    assert got["csv"][0] == {i + 2: sorted(e) for i, (_, e) in enumerate(cases) if e}
    assert [r[0] for r in got["csv"][1]] == ["2024-06", "2024-10"]


def test_a_parquet_files_empty_strings_and_null_flags_read_as_a_csv_files_empty_fields(tmp_path, load, sql):
    """What a CSV field cannot tell apart, a Parquet file can: an empty string from a NULL,
    and a NULL flag from false. Both formats must give the same codes for the same content."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [participant(kpj=f"1700000000{i}") for i in range(4)]
    rows[1]["kpj"] = ""
    cases = {2: [], 3: ["MISSING_VALUE:kpj"], 4: ["MISSING_VALUE:jkp"], 5: ["INCONSISTENT:jkk"]}
    columns = {c: [r[c] for r in rows] for c in PARTICIPANT_HEADER.split(",")}  # funder_code "" everywhere
    flags = {c: [v == "1" for v in columns[c]] for c in ("jkk", "jkm", "jht", "jp", "jkp")}
    flags["jkp"][2] = None
    flags["jkk"][3] = False
    pq.write_table(pa.table({**columns, **flags}), tmp_path / "p.parquet")
    write_delivery(tmp_path / "in", "participants__2024-12-31.parquet", (tmp_path / "p.parquet").read_bytes(),
                   row_count=4)
    csv_rows = [dict(r) for r in rows]
    csv_rows[2]["jkp"], csv_rows[3]["jkk"] = "", "0"
    write_delivery(tmp_path / "in", "participants__2024-12-30.csv", csv_text(PARTICIPANT_HEADER, csv_rows))
    load(tmp_path / "in")
    for ext, first in (("parquet", 1), ("csv", 2)):
        got = {line - first + 2: sorted(d) for line, d in sql(
            "select line, reason_details from raw.quarantine where file_name like ?", [f"%.{ext}"])}
        assert got == {k: v for k, v in cases.items() if v}, ext
    assert sql("select count(*), count(funder_code) from raw.participants") == [(2, 0)]


@pytest.mark.parametrize("ext", ["csv", "csv.gz"])  # read in parallel; read by one thread, judged in parallel
def test_a_file_read_on_several_threads_keeps_its_line_numbers(tmp_path, home, sql, ext):
    """DuckDB reads a large CSV file on several threads; every row must still get its own
    line: in the raw table (where the later line of a participant's two rows of one date
    wins, extracts.md §3.1), in the quarantine (with its own content) and in choosing the
    copy of an exact duplicate that is loaded. A 1 M-row file was once staged rotated (a
    join in the scan's plan let DuckDB write rows in any order), its lines all wrong."""
    from conftest import KEY
    from ingestion.loader import ingest
    from paritrana.warehouse import writer

    n, base = 1_000_000, 17_000_000_000
    tail = ("1771014508900003,Siti Aminah,1990-08-05,{gender},PU,BK000123,17.71,KARYAWAN,EMPLOYER,,"
            "1,1,1,1,1,{wage},ACTIVE,2020-01-01")
    rows = [f"{base + i}," + tail.format(gender="P", wage=3000000) for i in range(n)]
    for i in (5, 400_000, 800_000):
        rows[i] = f"{base + i}," + tail.format(gender="X", wage=3000000)
    rows[900_000] = f"{base + 300_000}," + tail.format(gender="P", wage=4000000)  # record 300,000 again, later
    # Exact duplicates, far after their first copies. Records 300,000, 900,000 and 950,000
    # share a fingerprint (kpj and effective date) but only the last two are alike: the
    # copy loaded must be the first one, at line 900,002, so the records read again to
    # compare them must be paired with the stage's rows in file order.
    rows[950_000] = rows[900_000]
    rows[999_998] = rows[10]
    write_delivery(tmp_path / "in", f"participants__2024-12-31.{ext}", PARTICIPANT_HEADER + "\n" + "\n".join(rows) + "\n")
    with writer(home) as con:
        con.execute("set threads = 4")  # several readers whatever the machine's cores
        report = ingest(con, tmp_path / "in", KEY, "t")
    r = report.results[0]
    assert (r.rows_in_file, r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (n, n - 5, 3, 2)
    # record i is on line i + 2, but for the repeated participant; a duplicate's loaded copy is the first
    assert sql(f"select count(*) from raw.participants where _line <> cast(kpj as bigint) - {base} + 2 "
               f"and kpj <> '{base + 300_000}'") == [(0,)]
    assert sql(f"select _line, monthly_wage_idr from raw.participants where kpj = '{base + 300_000}' "
               "order by _line") == [(300_002, 3000000), (900_002, 4000000)]
    assert sql(f"select _line from raw.participants where kpj = '{base + 10}'") == [(12,)]
    assert sql("select line, reason_codes, content->>'kpj' from raw.quarantine order by line") == [
        (7, ["NOT_IN_SET"], str(base + 5)), (400_002, ["NOT_IN_SET"], str(base + 400_000)),
        (800_002, ["NOT_IN_SET"], str(base + 800_000))]


def test_the_sort_that_rules_out_duplicates_finds_a_repeat_wherever_it_is():
    """Most files skip the duplicate and KEY_CONFLICT passes because no hash of theirs
    repeats: that check must see every repeat, among values on both sides of 2**63 (a
    64-bit hash is unsigned) and in rows far apart, and see none in an empty stage."""
    import duckdb

    from ingestion.loader import _repeats

    con = duckdb.connect()
    con.execute("create table stage as select hash(range) as h, range as i from range(300000)")
    assert con.execute("select count(*) from stage where h >= 2::ubigint ** 63").fetchone()[0] > 0
    assert not _repeats(con, "stage", "h")
    top = con.execute("select max(h) from stage").fetchone()[0]
    con.execute(f"update stage set h = {top} where i = 0")  # the first row repeats the largest value
    assert _repeats(con, "stage", "h")
    assert not _repeats(con, "stage", "hash(i)")  # an expression of the stage's columns
    assert _repeats(con, "stage", "hash(i % 299999)")  # the last row repeats the first
    con.execute("create table empty_stage as select * from stage limit 0")
    assert not _repeats(con, "empty_stage", "h")


def test_a_plan_that_would_write_rows_out_of_file_order_is_refused():
    """The check behind the test above: a statement that must keep the file's order runs
    only if DuckDB's plan writes in input order (or on one thread)."""
    import duckdb

    from ingestion.file_order import require_input_order, sink

    con = duckdb.connect()
    con.execute("set threads = 4")
    con.execute("create table delivered as select range as v from range(10)")
    # the shape of ingestion's checks: a value kept when in a closed set
    sql = "create table t as select case when v in (1, 2, 3, 4, 5, 6, 7) then v end as v from delivered"
    with pytest.raises(RuntimeError, match="would not keep the file's order"):
        require_input_order(con, sink(con, sql), sql)  # the IN list became a join
    con.execute("set disabled_optimizers = 'in_clause'")  # as ingestion sets it
    require_input_order(con, sink(con, sql), sql)
    con.execute("set disabled_optimizers = ''")
    con.execute("set threads = 1")  # one thread writes in order whatever the plan
    require_input_order(con, sink(con, sql), sql)


def test_a_plan_that_would_number_records_out_of_file_order_is_refused(tmp_path):
    """The check behind the exact duplicates' pairing above: a CSV file read again numbers
    its records as read, and runs only if DuckDB numbers them with a streaming window fed
    straight by the reader (one thread, file order), never after a filter or with a
    sorting window."""
    import duckdb

    from ingestion.file_order import plan, require_numbering_in_file_order

    con = duckdb.connect()
    con.execute("set threads = 4")
    path = tmp_path / "records.csv"
    con.execute(f"copy (select range as a, range % 7 as b from range(300000)) to {sql_str(str(path))}")
    reader = f"read_csv({sql_str(str(path))})"

    def check(select: str) -> None:
        sql = f"create temp table t as {select}"
        require_numbering_in_file_order(plan(con, sql), sql)

    # the shape of ingestion's re-reads: number every record, then keep some
    numbered = f"select * from (select *, row_number() over () as n from {reader}) where b = 3"
    check(numbered)
    con.execute(f"create temp table t as {numbered}")
    assert con.execute("select count(*) from t where n <> a + 1").fetchone() == (0,)
    con.execute("drop table t")
    with pytest.raises(RuntimeError, match="would not number the file's records in file order"):
        check(f"select *, row_number() over () as n from (select * from {reader} where b = 3)")
    with pytest.raises(RuntimeError, match="would not number the file's records in file order"):
        check(f"select *, row_number() over (order by b) as n from {reader}")


def test_parquet_columns_not_of_the_contracts_type_are_named_once_for_the_file(tmp_path, load, sql):
    """pandas writes a date column as a timestamp and an integer column with a gap as
    doubles: every row is then BAD_TYPE, and the file's result says why, once."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ingestion.loader import describe

    rows = [participant(kpj=f"1700000000{i}") for i in range(3)]
    columns = {c: [r[c] or None for r in rows] for c in PARTICIPANT_HEADER.split(",")}
    columns["birth_date"] = [dt.datetime(1990, 8, 5)] * 3  # a timestamp
    columns["monthly_wage_idr"] = [3_000_000.0] * 3  # a double
    columns["jkk"] = [1, 1, 1]  # an integer flag fits
    pq.write_table(pa.table(columns), tmp_path / "p.parquet")
    write_delivery(tmp_path / "in", "participants__2024-12-31.parquet", (tmp_path / "p.parquet").read_bytes(),
                   row_count=3)
    report = load(tmp_path / "in")
    r = report.results[0]
    assert (r.rows_loaded, r.rows_quarantined) == (0, 3)
    from paritrana.pipeline import ingest_summary
    assert any(line.startswith("  typed       participants__2024-12-31.parquet: ") for line in ingest_summary(report))
    assert r.mistyped_columns == ["birth_date TIMESTAMP, date expected", "monthly_wage_idr DOUBLE, int expected"]
    assert "columns not of the contract's type, judged as their text: birth_date TIMESTAMP, date expected; " \
           "monthly_wage_idr DOUBLE, int expected" in describe(r)
    assert sorted(sql("select reason_details from raw.quarantine")[0][0]) == ["BAD_TYPE:birth_date",
                                                                              "BAD_TYPE:monthly_wage_idr"]


def test_a_parquet_double_is_judged_as_the_number_it_is_not_as_its_scientific_text(tmp_path, load, sql):
    """DuckDB writes a double below 1e-4 or from 1e15 in scientific notation ("5e-05"), which
    no CSV number takes: a valid innovation score in a Parquet file was BAD_TYPE. A double
    now gives what the same number written out gives in a CSV file; NaN and infinity, which
    have no such writing, are BAD_TYPE."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    header = "region_code,year,has_regulation,apbd_allocation_idr,non_asn_headcount,innovation_score"
    scores = ["0.00005", "99.75", "100.5", "1000000000000000", "-0.5"]
    rows = [dict(region_code=f"17.0{i}", year="2024", has_regulation="1", apbd_allocation_idr="5",
                 non_asn_headcount="3", innovation_score=s) for i, s in enumerate(scores, 1)]
    write_delivery(tmp_path / "csv", "pemda_assessment__2024-12-31.csv", csv_text(header, rows))
    more = [dict(rows[0], region_code="17.06"), dict(rows[0], region_code="17.07")]  # NaN and infinity
    table = pa.table({c: [r[c] for r in rows + more] for c in header.split(",") if c != "innovation_score"}
                     | {"innovation_score": pa.array([float(s) for s in scores] + [float("nan"), float("inf")])})
    pq.write_table(table, tmp_path / "p.parquet")
    write_delivery(tmp_path / "parquet", "pemda_assessment__2024-12-30.parquet",
                   (tmp_path / "p.parquet").read_bytes(), row_count=len(scores) + 2)
    got = {}
    for ext in ("csv", "parquet"):
        load(tmp_path / ext)
        got[ext] = dict(sql("select q.line, q.reason_details from raw.quarantine q where file_name like ?",
                            [f"%.{ext}"]))
        got[ext + " loaded"] = sorted(sql("select region_code, innovation_score from raw.pemda_assessment "
                                          "where _load_id = (select max(load_id) from raw.load_ledger)"))
    first = 2  # the CSV file's first record; a Parquet file numbers its rows from 1
    assert got["csv"] == {first + 2: ["OUT_OF_RANGE:innovation_score"], first + 3: ["BAD_TYPE:innovation_score"],
                          first + 4: ["OUT_OF_RANGE:innovation_score"]}
    assert got["parquet"] == {line - 1: codes for line, codes in got["csv"].items()} | {
        6: ["BAD_TYPE:innovation_score"], 7: ["BAD_TYPE:innovation_score"]}
    assert got["csv loaded"] == got["parquet loaded"] == [("17.01", 0.00005), ("17.02", 99.75)]


def test_a_file_whose_rows_are_quarantined_is_named_with_its_commonest_reasons(tmp_path, home, sql):
    """Dates in another format (DD/MM/YYYY) quarantine every row of a file, which the
    contract still loads; the counts alone hid it. The file's line, the run's summary and
    the DAG's name each file with quarantined rows, its share (or every row), and its
    commonest reasons as the quarantine table counts them."""
    from ingestion.loader import REASONS_SHOWN, describe
    from paritrana.orchestration import ingest_group, summarize
    from paritrana.pipeline import ingest_summary

    rows = [claim(claim_id=f"C2024{i:08d}", submitted_date="01/11/2024",
                  paid_date="20/11/2024" if i < 8 else "2024-11-20", program="JKN" if i < 3 else "JKM",
                  amount_idr="4.2e7" if i == 0 else "42000000") for i in range(12)]
    write_delivery(tmp_path / "in", "claims__2024-12-31.csv", csv_text(CLAIM_HEADER, rows))
    fine = [participant(kpj=f"170000000{i:02d}") for i in range(9)] + [participant(kpj="1700", gender="X")]
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, fine))
    groups = [ingest_group(home, tmp_path / "in", extract, "night") for extract in ("claims", "participants")]

    counted = sql("select file_name, detail, count(*) from (select file_name, unnest(reason_details) as detail "
                  "from raw.quarantine) group by all order by file_name, count(*) desc, detail")
    assert [(d, n) for f, d, n in counted if f.startswith("claims")] == [
        ("BAD_TYPE:submitted_date", 12), ("BAD_TYPE:paid_date", 8), ("NOT_IN_SET:program", 3),
        ("BAD_TYPE:amount_idr", 1)]
    claims = groups[0]["files"][0]
    assert claims["rows_quarantined"] == 12 and claims["quarantine_reasons"] == [
        [d, n] for f, d, n in counted if f.startswith("claims")]
    told = ("every row (12) quarantined: BAD_TYPE:submitted_date 12, BAD_TYPE:paid_date 8, NOT_IN_SET:program 3, "
            "1 more")
    assert REASONS_SHOWN == 3
    partly = "1 of 10 rows quarantined (10.0%): BAD_FORMAT:kpj 1, NOT_IN_SET:gender 1"
    assert told in describe(FileResult(**{**claims, "status": "LOADED"}))
    dag = summarize("night", 2024, dt.date(2024, 12, 31), groups, None, None, None)
    assert f"quarantined claims__2024-12-31.csv: {told}" in dag.splitlines()
    assert f"quarantined participants__2024-12-31.csv: {partly}" in dag.splitlines()

    # the same lines in `paritrana run`'s summary, from the loader's own results
    again = resolve_home(tmp_path / "again")
    with writer(again) as con:
        report = ingest(con, tmp_path / "in", KEY, "run")
    assert f"  quarantined claims__2024-12-31.csv: {told}" in ingest_summary(report)
    assert f"  quarantined participants__2024-12-31.csv: {partly}" in ingest_summary(report)
