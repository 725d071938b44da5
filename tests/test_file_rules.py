"""File-level rejections of extracts.md §1, their precedence, and readiness."""
from __future__ import annotations

import gzip
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import PARTICIPANT_HEADER, TODAY, csv_text, participant, write_control, write_delivery
from ingestion import deliveries

GOOD = csv_text(PARTICIPANT_HEADER, [participant()])


def _only(report):
    assert len(report.results) == 1
    return report.results[0]


@pytest.mark.parametrize("name, content, control, code", [
    ("members__2024-12-31.csv", GOOD, None, "UNKNOWN_EXTRACT"),
    ("participants_2024-12-31.csv", GOOD, None, "UNKNOWN_EXTRACT"),
    ("participants__2024-02-30.csv", GOOD, None, "UNKNOWN_EXTRACT"),
    ("participants__2024-12-31.csv", GOOD, "{not json", "CONTROL_INVALID"),
    ("participants__2024-12-31.csv", GOOD, {"extract": "claims"}, "CONTROL_INVALID"),
    ("participants__2024-12-31.csv", GOOD, {"business_date": "2024-12-30"}, "CONTROL_INVALID"),
    ("participants__2024-12-31.csv", GOOD, {"row_count": "1"}, "CONTROL_INVALID"),
    ("participants__2024-12-31.csv", GOOD, {"schema_version": 2}, "UNSUPPORTED_SCHEMA"),
    ("participants__2024-12-31.csv", GOOD, {"sha256": "0" * 64}, "CONTROL_MISMATCH"),
    ("participants__2024-12-31.csv", b"kpj,nik\n1,\xff\xfe\n", {"row_count": 1}, "UNREADABLE"),
    ("participants__2024-12-31.csv", GOOD + "1,2\n", {"row_count": 2}, "UNREADABLE"),
    ("participants__2024-12-31.csv", GOOD.replace("full_name,", "name,", 1), None, "MISSING_COLUMN"),
    ("participants__2024-12-31.csv", GOOD, {"row_count": 2}, "CONTROL_MISMATCH"),
])
def test_file_rejections(tmp_path, load, sql, name, content, control, code):
    write_delivery(tmp_path / "in", name, content, control=control)
    r = _only(load(tmp_path / "in"))
    assert (r.status, r.reason_code) == ("REJECTED", code), r.reason_detail
    assert sql("select count(*) from raw.participants") == [(0,)]
    assert sql("select status, reason_code from raw.load_ledger") == [("REJECTED", code)]


@pytest.mark.parametrize("control, code", [
    # When several apply, the first in the contract's order is reported.
    ({"extract": "claims", "schema_version": 2, "sha256": "0" * 64}, "CONTROL_INVALID"),
    ({"schema_version": 2, "sha256": "0" * 64}, "UNSUPPORTED_SCHEMA"),
    ({"sha256": "0" * 64, "row_count": 5}, "CONTROL_MISMATCH"),
])
def test_rejection_precedence(tmp_path, load, control, code):
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", GOOD.replace("full_name,", "name,", 1),
                   control=control)
    assert _only(load(tmp_path / "in")).reason_code == code


def test_unreadable_beats_missing_column_and_row_count(tmp_path, load):
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", b"kpj\n\xff\n", control={"row_count": 9})
    assert _only(load(tmp_path / "in")).reason_code == "UNREADABLE"


def test_missing_column_beats_row_count(tmp_path, load):
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", GOOD.replace("nik,", "x,", 1),
                   control={"row_count": 7})
    assert _only(load(tmp_path / "in")).reason_code == "MISSING_COLUMN"


def test_error_messages_never_quote_the_row(tmp_path, load, sql):
    bad = GOOD + "17012345679,1771014508900004,Rahasia Sekali,x,y\n"
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", bad, control={"row_count": 2})
    r = _only(load(tmp_path / "in"))
    assert r.reason_code == "UNREADABLE"
    text = str(sql("select * from raw.load_ledger"))
    assert "1771014508900004" not in text and "Rahasia" not in text and "Rahasia" not in r.reason_detail


def test_not_ready_until_control_file_arrives(tmp_path, load, sql):
    landing = tmp_path / "in"
    path = write_delivery(landing, "participants__2024-12-31.csv", GOOD)
    ctl = path.with_name(path.name + ".ctl.json")
    held = ctl.read_text()
    ctl.unlink()
    report = load(landing)
    assert report.results == [] and report.not_ready == ["participants__2024-12-31.csv"]
    assert sql("select count(*) from raw.load_ledger") == [(0,)]
    ctl.write_text(held)
    assert _only(load(landing)).status == "LOADED"


def test_a_waiting_file_that_no_control_file_could_make_a_delivery_is_said_to_be_one(tmp_path, load):
    """A file that waits for its control file is said to wait; one whose name no control file
    could make a delivery's (a note, a backup, a name in capitals) would wait every night
    under that word alone: the summary says at once that it would be rejected, and why."""
    from paritrana.pipeline import delivery_notes

    landing = tmp_path / "in"
    path = write_delivery(landing, "participants__2024-12-31.csv", GOOD)
    path.with_name(path.name + ".ctl.json").unlink()
    for name in ("notes.txt", "participants__2024-12-31.csv.bak", "Claims__2025-01-06.CSV", "claims__2025-02-30.csv"):
        (landing / name).write_text(GOOD)
    report = load(landing)
    assert report.results == [] and len(report.not_ready) == 5
    notes = {name: text for label, name, text in delivery_notes([], report.not_ready, [], []) if label == "waiting"}
    assert notes["participants__2024-12-31.csv"] == "no control file yet"
    rejected = "no control file yet; with one it would be rejected, UNKNOWN_EXTRACT: "
    move = ". Rename it, or move it out of the landing"
    shape = "file name does not follow <extract>__<YYYY-MM-DD>.<csv|csv.gz|parquet>"
    assert notes["notes.txt"] == notes["participants__2024-12-31.csv.bak"] == rejected + shape + move
    assert notes["Claims__2025-01-06.CSV"] == \
        rejected + shape + " (names are case-sensitive: claims__2025-01-06.csv would be one)" + move
    assert notes["claims__2025-02-30.csv"] == rejected + "'2025-02-30' in the file name is not a calendar date" + move


def test_bom_extra_columns_and_column_order(tmp_path, load, sql):
    cols = PARTICIPANT_HEADER.split(",")
    header = ",".join(["note"] + cols[::-1])
    text = "\ufeff" + csv_text(header, [{**participant(), "note": "hello"}])
    r = _only(load(write_delivery(tmp_path / "in", "participants__2024-12-31.csv", text).parent))
    assert (r.status, r.rows_loaded, r.extra_columns) == ("LOADED", 1, ["note"])
    assert sql("select kpj, monthly_wage_idr from raw.participants") == [("17012345678", 3_000_000)]


def test_parquet_with_typed_columns(tmp_path, load, sql):
    import datetime as dt
    table = pa.table({"npp": ["BK000123", "BK000124", "bad"], "period_month": ["2024-10", "2024-10", "2024-10"],
                      "workers_billed": [3, 4, 5], "billed_idr": [100, 100, 100], "paid_idr": [100, 0, 100],
                      "paid_date": [dt.date(2024, 11, 5), None, dt.date(2024, 11, 5)]})
    landing = tmp_path / "in"
    landing.mkdir()
    pq.write_table(table, landing / "tmp.parquet")
    data = (landing / "tmp.parquet").read_bytes()
    (landing / "tmp.parquet").unlink()
    write_delivery(landing, "contributions__2024-12-31.parquet", data, row_count=3)
    r = _only(load(landing))
    assert (r.rows_loaded, r.rows_quarantined) == (2, 1)
    assert sql("select line, reason_details from raw.quarantine") == [(3, ["BAD_FORMAT:npp"])]


@pytest.mark.parametrize("content, says", [(b"PAR1 not really", "No magic bytes found at end of file"),
                                           (b"PAR1", "too small to be a Parquet file")])
def test_unreadable_parquet(tmp_path, load, content, says):
    write_delivery(tmp_path / "in", "contributions__2024-12-31.parquet", content, row_count=0)
    r = _only(load(tmp_path / "in"))
    assert r.reason_code == "UNREADABLE" and says in r.reason_detail, r.reason_detail


def test_rejected_file_is_not_reprocessed_until_it_changes(tmp_path, load, sql):
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv", GOOD, control={"row_count": 5})
    assert _only(load(landing)).reason_code == "CONTROL_MISMATCH"
    again = load(landing)
    assert again.results == [] and again.already_processed == ["participants__2024-12-31.csv"]
    write_delivery(landing, "participants__2024-12-31.csv", GOOD)  # provider fixes the control file
    assert _only(load(landing)).status == "LOADED"


def test_control_mismatch_beats_unreadable(tmp_path, load):
    # The digest is taken while the file is scanned; its verdict still comes first.
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", b"kpj,nik\n1,\xff\xfe\n",
                   control={"row_count": 1, "sha256": "0" * 64})
    assert _only(load(tmp_path / "in")).reason_code == "CONTROL_MISMATCH"


def _participants(n: int, **overrides) -> list[str]:
    """The lines of a valid participants file of n rows (header first), one per line."""
    return csv_text(PARTICIPANT_HEADER, [participant(kpj=f"17{i:09d}", **overrides) for i in range(n)]).splitlines()


@pytest.mark.parametrize("bad_line", [3, 5_002])  # inside the header's first read block, and far beyond it
def test_a_byte_that_is_not_utf8_is_reported_on_its_line_not_blamed_on_the_header(tmp_path, load, sql, bad_line):
    lines = [ln.encode() for ln in _participants(6_000)]
    lines[bad_line - 1] = lines[bad_line - 1].replace(b"KARYAWAN", b"KARY\xc1WAN")
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", b"\n".join(lines) + b"\n", row_count=6_000)
    r = _only(load(tmp_path / "in"))
    assert r.reason_code == "UNREADABLE"
    assert r.reason_detail.startswith(f"not readable as UTF-8 CSV (RFC 4180) on line {bad_line:,}: Invalid unicode")
    assert "header" not in r.reason_detail and "quoted" not in r.reason_detail


def test_a_header_that_is_not_utf8_is_unreadable(tmp_path, load):
    text = PARTICIPANT_HEADER.encode().replace(b"full_name", b"full_n\xe2me") + b"\n"
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", text, row_count=0)
    r = _only(load(tmp_path / "in"))
    assert (r.reason_code, r.reason_detail) == ("UNREADABLE", "header is not UTF-8 text")


def test_a_ragged_record_is_reported_on_its_line_and_the_count_it_gives_is_explained(tmp_path, load):
    lines = _participants(50)
    lines[30] = lines[30].rsplit(",", 2)[0]  # line 31 has 17 fields
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", "\n".join(lines) + "\n", row_count=50)
    r = _only(load(tmp_path / "in"))
    assert r.reason_detail == ("not readable as UTF-8 CSV (RFC 4180) on line 31: "
                               "Expected Number of Columns: 19 Found: 17")
    # A quoted line break above moves the record to line 32; the reader still says 31, and
    # the detail says how it counts.
    lines[5] = lines[5].replace("Siti Aminah", '"Siti\nAminah"')
    write_delivery(tmp_path / "in2", "participants__2024-12-31.csv", "\n".join(lines) + "\n", row_count=50)
    r = _only(load(tmp_path / "in2"))
    assert r.reason_detail.startswith("not readable as UTF-8 CSV (RFC 4180) on line 31: Expected Number")
    assert r.reason_detail.endswith("(a line number that does not count line breaks inside quoted fields above it)")


def test_a_semicolon_separated_file_is_told_why_its_columns_are_missing(tmp_path, load):
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", GOOD.replace(",", ";"))
    r = _only(load(tmp_path / "in"))
    assert r.reason_code == "MISSING_COLUMN"
    assert r.reason_detail.endswith("(the header is one column separated by semicolons; extracts.md §1 asks for commas)")


def test_a_column_named_but_for_case_or_spaces_is_pointed_out(tmp_path, load):
    """Column names are exact and case-sensitive (extracts.md §1): `NPP` or `npp ` is no npp,
    and the file is MISSING_COLUMN, but the detail says which header name was meant."""
    header = PARTICIPANT_HEADER.replace("npp", "NPP").replace("kpj", " kpj")
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", GOOD.replace(PARTICIPANT_HEADER, header, 1))
    r = _only(load(tmp_path / "in"))
    assert (r.reason_code, r.reason_detail) == ("MISSING_COLUMN", "required column(s) absent from the header: kpj, "
                                                "npp (the header has ' kpj' for kpj, 'NPP' for npp: names are exact "
                                                "and case-sensitive)")


def test_a_provider_folder_linked_into_the_landing_is_read_and_a_link_to_nothing_is_reported(tmp_path, load):
    from paritrana.pipeline import ingest_summary

    provider = tmp_path / "bpjs_drop"
    write_delivery(provider, "participants__2024-12-31.csv", GOOD)
    landing = tmp_path / "in"
    landing.mkdir()
    (landing / "bpjs").symlink_to(provider, target_is_directory=True)
    (provider / "loop").symlink_to(landing, target_is_directory=True)  # a link back up: read once
    (landing / "claims__2024-12-31.csv").symlink_to(tmp_path / "moved_away.csv")
    report = load(landing)
    assert [(r.file_name, r.status) for r in report.results] == [("bpjs/participants__2024-12-31.csv", "LOADED")]
    assert report.broken_links == ["claims__2024-12-31.csv"]
    assert "  broken      claims__2024-12-31.csv: a symbolic link to nothing" in ingest_summary(report)


def test_hidden_and_partial_files_are_counted_and_those_that_would_be_deliveries_named(tmp_path, load):
    """Dot-files, files in dot-folders and `.tmp`/`.part` files are never loaded (an upload in
    progress, a tool's own files), but not in silence: the summaries count them, and name
    those that would be deliveries under their plain names, in the run's and the DAG's."""
    from paritrana.orchestration import summarize
    from paritrana.pipeline import ingest_summary

    landing = tmp_path / "in"
    write_delivery(landing / ".upload", "participants__2024-12-31.csv", GOOD)  # a hidden folder, control and all
    (landing / "claims__2024-12-31.csv.part").write_text("claim_id\n")
    (landing / ".DS_Store").write_bytes(b"\0")
    (landing / ".generator.json").write_text("{}")  # the generator's own list: not counted
    (landing / "sub").mkdir()
    (landing / "sub" / ".generator.json").write_text("{}")  # only at the landing's root
    report = load(landing)
    assert report.results == [] and sorted(report.ignored) == [
        ".DS_Store", ".upload/participants__2024-12-31.csv", ".upload/participants__2024-12-31.csv.ctl.json",
        "claims__2024-12-31.csv.part", "sub/.generator.json"]
    summary = ingest_summary(report)
    assert summary[0].endswith(", 5 ignored (hidden or partial)")
    ignored = [line.split(":")[0].split()[-1] for line in summary if line.startswith("  ignored")]
    assert ignored == [".upload/participants__2024-12-31.csv", ".upload/participants__2024-12-31.csv.ctl.json",
                       "claims__2024-12-31.csv.part"]
    dag = summarize("night", 2024, TODAY, [{"files": [], "rows": {}, "ignored": report.ignored}], None, None, None)
    assert "ignored claims__2024-12-31.csv.part: hidden (a dot in its path) or partial" in dag
    assert ".DS_Store" not in dag


def test_an_invalid_control_file_is_told_where_it_breaks(tmp_path, load):
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", GOOD,
                   control='{"extract": "participants",\n "row_count": 1 "sha256": "x"}')
    r = _only(load(tmp_path / "in"))
    assert (r.reason_code, r.reason_detail) == (
        "CONTROL_INVALID", "control file is not valid JSON: Expecting ',' delimiter at line 2, column 17")
    # a field of the wrong JSON type says what it must be and what it is
    for i, (change, detail) in enumerate([
            ({"row_count": "1"}, "control field 'row_count' must be a JSON whole number (1, not 1.0 or \"1\"), "
                                 "not \"1\""),
            ({"schema_version": 1.0}, "control field 'schema_version' must be a JSON whole number (1, not 1.0 or "
                                      "\"1\"), not 1.0"),
            ({"produced_at": None}, "control field 'produced_at' must be a JSON string, not null")]):
        landing = tmp_path / f"typed{i}"
        write_delivery(landing, "participants__2024-12-31.csv", GOOD, control=change)
        r = _only(load(landing))
        assert (r.reason_code, r.reason_detail) == ("CONTROL_INVALID", detail)
    missing = tmp_path / "missing"
    write_delivery(missing, "participants__2024-12-31.csv", GOOD)
    control = missing / "participants__2024-12-31.csv.ctl.json"
    control.write_text(json.dumps({k: v for k, v in json.loads(control.read_text()).items() if k != "sha256"}))
    assert _only(load(missing)).reason_detail == "control field 'sha256' must be a JSON string, not missing"


def test_a_home_inside_the_landing_is_not_scanned_and_one_that_is_the_landing_is_refused(tmp_path):
    from ingestion.deliveries import scan_landing
    from paritrana.pipeline import ingest_step
    from paritrana.settings import resolve_home

    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-31.csv", GOOD)
    paths = resolve_home(landing / "home")
    (paths.home / "published" / "2024").mkdir(parents=True)
    (paths.home / "published" / "2024" / "rankings_umk.csv").write_text("x\n")  # a publication, not a delivery
    report = ingest_step(paths, landing, "t", progress=lambda _: None)
    assert [r.status for r in report.results] == ["LOADED"] and report.not_ready == []
    assert scan_landing(landing).not_ready  # without the home named, its files would wait forever
    with pytest.raises(ValueError, match="is the warehouse's home"):
        ingest_step(resolve_home(landing), landing, "t", progress=lambda _: None)


def test_a_truncated_gzip_file_is_unreadable_and_says_so(tmp_path, load):
    whole = gzip.compress(csv_text(PARTICIPANT_HEADER, [participant(kpj=f"17{i:09d}") for i in range(5000)]).encode())
    path = tmp_path / "in" / "participants__2024-12-31.csv.gz"
    path.parent.mkdir()
    path.write_bytes(whole[: len(whole) // 2])  # a transfer cut off
    write_control(path, 5000)
    r = _only(load(tmp_path / "in"))
    assert r.reason_code == "UNREADABLE" and "Unexpected end of GZIP stream" in r.reason_detail, r.reason_detail


def test_a_name_in_the_wrong_case_is_told_the_name_it_should_have(tmp_path, load):
    write_delivery(tmp_path / "in", "participants__2024-12-31.CSV", GOOD)
    r = _only(load(tmp_path / "in"))
    assert (r.reason_code, r.reason_detail) == (
        "UNKNOWN_EXTRACT", "file name does not follow <extract>__<YYYY-MM-DD>.<csv|csv.gz|parquet> "
                           "(names are case-sensitive: participants__2024-12-31.csv would be one)")


def test_a_column_without_a_name_is_an_unknown_column_and_a_repeated_name_is_unreadable(tmp_path, load, sql):
    # a spreadsheet's export with a trailing comma on every line
    text = "\n".join(line + "," for line in GOOD.splitlines()) + "\n"
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", text)
    r = _only(load(tmp_path / "in"))
    assert (r.status, r.rows_loaded, r.extra_columns) == ("LOADED", 1, ["(unnamed column 20)"])
    write_delivery(tmp_path / "in2", "participants__2024-12-31.csv", GOOD.replace("full_name,", "gender,", 1))
    r = _only(load(tmp_path / "in2"))
    assert (r.reason_code, r.reason_detail) == ("UNREADABLE", "header has empty or repeated column names "
                                                              "(gender more than once)")


@pytest.mark.parametrize("folder", ["in?x", "in*", "in[1]"])
def test_a_landing_whose_name_is_a_glob_pattern_reads_its_own_files_only(tmp_path, load, sql, folder):
    """DuckDB takes a reader's path as a glob pattern: `in?x` also read `in$x`, beside it."""
    write_delivery(tmp_path / folder, "participants__2024-12-31.csv.gz", GOOD)
    write_delivery(tmp_path / folder, "contributions__2024-12-31.csv", "npp,period_month,workers_billed,billed_idr,"
                   "paid_idr,paid_date\nBK000123,2024-10,3,100,100,2024-11-05\n")
    for sibling in ("in$x", "inx", "in1", "in_1"):  # what the pattern would match besides the folder itself
        write_delivery(tmp_path / sibling, "participants__2024-12-31.csv.gz",
                       csv_text(PARTICIPANT_HEADER, [participant(kpj="17000000099")]))
    report = load(tmp_path / folder)
    assert [(r.status, r.rows_loaded) for r in report.results] == [("LOADED", 1), ("LOADED", 1)]
    assert sql("select kpj from raw.participants") == [("17012345678",)]


def test_a_home_path_the_stack_would_misread_is_refused_by_name(tmp_path):
    from paritrana.settings import resolve_home

    for name in ("a#1", "a?b", "a$b"):
        with pytest.raises(ValueError, match=f"holds '\\{name[1]}', which the stack reads as syntax"):
            resolve_home(tmp_path / name)
        assert not (tmp_path / name).exists()
    assert resolve_home(tmp_path / "an analyst's 50% ñ home").home.is_dir()


@pytest.mark.parametrize("read_size", [7, 4096, None])
@pytest.mark.parametrize("ending", [b"\n", b"", b"\r\n\n\r\n"])
def test_a_files_digest_is_the_same_whatever_its_pieces(tmp_path, monkeypatch, read_size, ending):
    """The file's SHA-256 and its text's line breaks are taken in pieces of READ_SIZE while
    DuckDB scans it: a piece that ends inside a CRLF, or inside a gzip member, must change
    nothing. Compared with the whole file's bytes taken at once."""
    if read_size:
        monkeypatch.setattr(deliveries, "READ_SIZE", read_size)
    rows = [participant(kpj=f"17{i:09d}") for i in range(300)]
    text = csv_text(PARTICIPANT_HEADER, rows).replace("\n", "\r\n").encode().rstrip(b"\r\n") + ending
    stored = {"csv": text,
              # two gzip members, split inside a record: one gzip stream, as DuckDB and gzip(1) read it
              "csv.gz": gzip.compress(text[:5000]) + gzip.compress(text[5000:])}
    blank = max(0, text[len(text.rstrip(b"\r\n")):].count(b"\n") - 1)
    for ext, data in stored.items():
        path = tmp_path / f"participants__2024-12-31.{ext}"
        path.write_bytes(data)
        assert deliveries.file_digest(path, ext == "csv.gz") == deliveries.FileDigest(
            hashlib.sha256(data).hexdigest(), text.count(b"\n"), text.endswith(b"\n"), blank), (ext, read_size)
