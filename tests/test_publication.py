"""Quality gate and publication (issue 4): manifest hashes, exit 2 on a blocking failure or
referential orphans over the gate, crash-safe `latest`, export round trips, readers during a run."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb
import pytest

from ingestion.rules import sql_str
from paritrana.methodology import INDICATORS

from conftest import (PARTICIPANT_HEADER, PYTHON, csv_text, page_text, paritrana, participant, write_control,
                      write_delivery)

RANKINGS = ("pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _latest(work) -> Path:
    return (work.home_dir / "published" / "2024" / "latest").resolve()


def _assert_publication_intact(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["files"]) == 8 and len(manifest["basis"]) == 3
    for f in manifest["files"] + manifest["basis"]:
        assert _sha(folder / f["file"]) == f["sha256"], f["file"]
    return manifest


def test_clean_run_publishes_files_matching_the_manifest(bengkulu):
    folder = _latest(bengkulu)
    manifest = _assert_publication_intact(folder)
    assert folder.name == manifest["run_id"] and manifest["year"] == 2024 and manifest["as_of"] == "2024-12-31"
    assert {f["file"] for f in manifest["files"]} == {f"rankings_{r}.{x}" for r in RANKINGS for x in ("csv", "parquet")}
    assert len(manifest["configuration"]["sha256"]) == 64 and manifest["configuration"]["values"]["weights"]
    assert manifest["quality_checks"] and all(c["passed"] for c in manifest["quality_checks"]
                                              if c["severity"] == "blocking")
    assert {r["check"] for r in manifest["referential_checks"]} >= {"participants_region_code", "claims_kpj"}
    assert sum(i["rows_loaded"] for i in manifest["inputs"]) > 400_000
    for f in manifest["files"]:
        path = folder / f["file"]
        rows = (sum(1 for _ in path.open()) - 1) if f["format"] == "csv" else \
            duckdb.sql(f"select count(*) from {sql_str(str(path))}").fetchall()[0][0]
        assert rows == f["rows"], f["file"]
    # CSV and Parquet hold the same content; columns in the published order.
    for r in RANKINGS:
        con = duckdb.connect()
        a = con.sql(f"select * from read_csv({sql_str(str(folder / f'rankings_{r}.csv'))}, all_varchar=true)").fetchall()
        b = con.sql(f"select * from {sql_str(str(folder / f'rankings_{r}.parquet'))}").fetchall()
        norm = lambda v: "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))  # noqa: E731
        assert [[norm(v) or None for v in row] for row in a] == [[norm(v) or None for v in row] for row in b]
    header = (folder / "rankings_badan_usaha.csv").open().readline().strip().split(",")
    assert header[:7] == ["year", "as_of", "entity_code", "entity_name", "province_code", "size_class", "sector"]
    assert header[header.index("eligible"):header.index("eligible") + 5] == \
        ["eligible", "ineligible_reason", "total_score", "rank_national", "rank_province"]
    assert header[-2:] == ["ecosystem_extension_value", "ecosystem_extension_score"]


def test_rows_are_in_published_order(bengkulu):
    with (_latest(bengkulu) / "rankings_badan_usaha.csv").open() as f:
        rows = list(csv.DictReader(f))
    order = {"BESAR": 0, "MENENGAH": 1, "KECIL": 2}
    # eligible by size class then rank; ineligible ones last, by entity code
    keys = [(r["eligible"] == "false", order[r["size_class"]] if r["eligible"] == "true" else 0,
             int(r["rank_national"] or 0), r["entity_code"] if r["eligible"] == "false" else "") for r in rows]
    assert keys == sorted(keys)
    assert rows[-1]["eligible"] == "false" and rows[0]["size_class"] == "BESAR"
    for size in order:
        ranks = [int(r["rank_national"]) for r in rows if r["size_class"] == size and r["rank_national"]]
        assert ranks == list(range(1, len(ranks) + 1))
    assert all(r["total_score"] == "" and r["ineligible_reason"] for r in rows if r["eligible"] == "false")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_export_round_trips(bengkulu, tmp_path, fmt):
    out = tmp_path / f"bu.{fmt}"
    result = paritrana("export", "--category", "badan_usaha", "--year", "2024", "--format", fmt, "--out", str(out),
                       "--home", str(bengkulu.home_dir))
    assert result.returncode == 0, result.stderr
    published = _latest(bengkulu) / "rankings_badan_usaha.csv"
    with published.open(newline="") as f:
        expected = list(csv.reader(f))
    if fmt == "csv":
        assert out.read_bytes() == published.read_bytes()
    elif fmt == "parquet":
        assert out.read_bytes() == (published.with_suffix(".parquet")).read_bytes()
    else:
        from openpyxl import load_workbook
        wb = load_workbook(out)
        assert wb.sheetnames == ["badan_usaha", "Indicators", "Run"]
        ws = wb["badan_usaha"]
        got = [[_cell_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
        assert got[0] == expected[0]
        assert len(got) == len(expected)
        for g, e in zip(got[1:], expected[1:]):
            assert [_same(a, b) for a, b in zip(g, e)] == [True] * len(e), (g, e)
        assert ws.freeze_panes == "F2" and ws.cell(2, expected[0].index("total_score") + 1).number_format == "0.0000"
        assert ws.auto_filter.ref == f"A1:{ws.cell(1, len(expected[0])).column_letter}{len(expected)}"
        # each cell typed by its column: numbers in the formatted ones, booleans, and text
        from paritrana.export import _number_format
        for column, name in enumerate(expected[0], start=1):
            cells = [ws.cell(r, column) for r in range(2, len(expected) + 1)]
            kinds = {type(c.value).__name__ for c in cells if c.value is not None}
            if _number_format(name):
                assert kinds <= {"int", "float"} and kinds, (name, kinds)
                assert {c.number_format for c in cells if c.value is not None} == {_number_format(name)}, name
            elif name in ("eligible", "pds_workers", "pds_wage", "pds_program"):
                assert kinds == {"bool"}, (name, kinds)
            else:
                assert kinds <= {"str"}, (name, kinds)
        weights = {r[0]: r[2] for r in wb["Indicators"].iter_rows(min_row=2, values_only=True) if r[2] is not None}
        assert weights == {"worker_registration": 30, "wage_compliance": 20, "program_compliance": 20,
                           "contribution_timeliness": 20, "ecosystem_extension": 10}


@pytest.mark.parametrize("ranking", ["pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk"])
def test_the_indicator_table_lines_up_with_its_ranking_row_for_row(bengkulu, tmp_path, ranking):
    """`export --table indicators`: the publication's basis mart for the category, each
    indicator's numerator and denominator with its unrounded value and score, in the
    ranking's rows and order, each value rounding to the published one; the same table in
    all three formats."""
    home = ["--home", str(bengkulu.home_dir)]
    outs = {}
    manifest = json.loads((_latest(bengkulu) / "manifest.json").read_text())
    rows = {f["file"]: f["rows"] for f in manifest["files"]}[f"rankings_{ranking}.csv"]
    made_from = (f"indicators_{ranking}, {rows:,} rows, of publication {_latest(bengkulu).name} "
                 "(year 2024, as of 2024-12-31)")
    for fmt in ("csv", "parquet", "xlsx"):
        result = paritrana("export", "--category", ranking, "--year", "2024", "--format", fmt, "--table",
                           "indicators", "--out", str(tmp_path / "sent") + "/", *home)
        outs[fmt] = tmp_path / "sent" / f"indicators_{ranking}.{fmt}"
        assert result.returncode == 0 and result.stdout.strip() == f"wrote {outs[fmt]}: {made_from}", result.stderr
    with (_latest(bengkulu) / f"rankings_{ranking}.csv").open(newline="") as f:
        published = list(csv.DictReader(f))
    with outs["csv"].open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["entity_code"] for r in table] == [r["entity_code"] for r in published] and len(table) > 0
    group = {"pemda_provinsi": "pemda", "pemda_kabkota": "pemda"}.get(ranking, ranking)
    names = [i.name for i in INDICATORS[group]]
    for row, shown in zip(table, published):
        for name in names:
            for part, places in (("value", 6), ("score", 4)):
                column = f"{name}_{part}"
                assert (row[column] == "") == (shown[column] == ""), column
                if row[column]:
                    assert abs(float(row[column]) - float(shown[column])) <= 0.5 * 10 ** -places + 1e-12, column
        assert row["eligible"] == shown["eligible"] and row["rank_national"] == shown["rank_national"]
        for i in INDICATORS[group]:  # the parts give the value back
            if i.numerator and i.denominator and not i.denominator.isdigit() and row[f"{i.name}_value"] and \
                    float(row[i.denominator]) > 0 and "at most 1" not in i.rule:
                assert abs(float(row[i.numerator]) / float(row[i.denominator]) - float(row[f"{i.name}_value"])) \
                    < 1e-12
    basis = _latest(bengkulu) / "basis" / f"{'pemda' if group == 'pemda' else group}_indicators.parquet"
    columns = duckdb.sql(f"select * from read_parquet({sql_str(str(basis))}) limit 0").columns
    sent = f"read_parquet({sql_str(str(outs['parquet']))})"
    assert list(table[0]) == columns and duckdb.sql(f"select * from {sent}").columns == columns
    assert duckdb.sql(f"select count(*) from {sent}").fetchall() == [(len(table),)]

    from openpyxl import load_workbook
    ws = load_workbook(outs["xlsx"]).worksheets[0]
    got = [[_cell_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
    assert got[0] == columns and len(got) == len(table) + 1 and ws.freeze_panes == "C2"
    for g, row in zip(got[1:], table):
        assert [_same(a, b) for a, b in zip(g, row.values())] == [True] * len(columns), (g, row)
    for column, name in enumerate(columns, start=1):  # every count and share a number, not text
        if name in ("participants", "bills_for_year", "employed", "total_score") or name.endswith("_value"):
            kinds = {type(ws.cell(r, column).value).__name__ for r in range(2, len(got) + 1)} - {"NoneType"}
            assert kinds and kinds <= {"int", "float"}, (name, kinds)


def test_an_indicator_table_needs_a_publication_with_its_basis(demo, tmp_path):
    work = demo.copy(tmp_path / "w")
    shutil.rmtree(_latest(work) / "basis")
    result = paritrana("export", "--category", "umk", "--year", "2024", "--format", "csv", "--table", "indicators",
                       "--out", str(tmp_path / "x.csv"), "--home", str(work.home_dir))
    assert result.returncode == 1 and "keeps no basis/ folder (it was published before 0.3.9)" in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_a_ranking_longer_than_an_excel_sheet_is_refused_as_xlsx_before_writing(bengkulu, tmp_path, monkeypatch):
    """An Excel sheet holds 1,048,576 rows (the national micro enterprises are 678,000 at
    scale 1.0, more at larger scales): the export says so, and which formats hold it all."""
    from paritrana import export

    rows = sum(1 for _ in (_latest(bengkulu) / "rankings_umk.csv").open()) - 1
    monkeypatch.setattr(export, "XLSX_MAX_ROWS", rows)  # one row short, header included
    out = tmp_path / "umk.xlsx"
    with pytest.raises(ValueError, match=f"rankings_umk has {rows:,} rows, more than an Excel sheet holds"):
        export.export(bengkulu.paths, "umk", 2024, "xlsx", out)
    assert not out.exists() and not list(tmp_path.iterdir())
    monkeypatch.setattr(export, "XLSX_MAX_ROWS", rows + 1)
    assert export.export(bengkulu.paths, "umk", 2024, "xlsx", out) == out


def test_export_says_when_latest_names_a_publication_that_is_gone(demo, tmp_path):
    work = demo.copy(tmp_path / "w")
    link = work.home_dir / "published" / "2024" / "latest"
    target = link.resolve()
    target.rename(tmp_path / "moved")
    result = paritrana("export", "--category", "umk", "--year", "2024", "--format", "csv", "--out",
                       str(tmp_path / "x.csv"), "--home", str(work.home_dir))
    assert result.returncode == 1
    assert f"names {target.name}, which is no longer there" in result.stderr, result.stderr


def test_export_into_a_folder_writes_the_published_file_name_there(bengkulu, tmp_path):
    result = paritrana("export", "--category", "umk", "--year", "2024", "--format", "csv", "--out", str(tmp_path),
                       "--home", str(bengkulu.home_dir))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "rankings_umk.csv"
    assert result.stdout.strip().startswith(f"wrote {out}: rankings_umk, ")
    assert result.stdout.strip().endswith(f" rows, of publication {_latest(bengkulu).name} (year 2024, as of 2024-12-31)")
    assert out.read_bytes() == (_latest(bengkulu) / "rankings_umk.csv").read_bytes()
    # a trailing slash names a folder, made if need be, never a file of that name
    result = paritrana("export", "--category", "umk", "--year", "2024", "--format", "csv", "--out",
                       str(tmp_path / "new" / "deep") + "/", "--home", str(bengkulu.home_dir))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "deep" / "rankings_umk.csv").read_bytes() == out.read_bytes()



def test_a_reader_that_closes_the_pipe_early_stops_the_command_quietly(bengkulu, monkeypatch, capsys):
    """`paritrana export --out - | head`, `paritrana explain ... | head`: the reader goes away
    mid-output, and the write fails with a broken pipe. The command printed "error: [Errno 32]
    Broken pipe"; it now stops quietly with exit 1, its standard output sent to /dev/null so
    that nothing more is written where no one reads. A run stopped so says it. (A real pipe
    makes the write fail only for an output larger than the pipe holds, 1 MB on this
    machine: the national ranking, measured by hand.)"""
    import os
    import sys

    from paritrana import cli, explain, export, pipeline

    def closed(*_args, **_kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(export, "_write", closed)
    monkeypatch.setattr(explain, "render", closed)
    monkeypatch.setattr(pipeline, "run", closed)
    home = ("--home", str(bengkulu.home_dir))
    for argv in (["export", "--category", "umk", "--year", "2024", "--format", "csv", "--out", "-", *home],
                 ["explain", "--entity", "17", *home],
                 ["run", "--landing", str(bengkulu.landing), "--year", "2024", *home]):
        monkeypatch.setattr(sys, "stdout", sys.stdout)  # put back after the test
        assert cli.main(argv) == 1
        assert sys.stdout.name == os.devnull  # nothing more where no one reads
        told = capsys.readouterr().err
        assert told == ("" if argv[0] != "run" else "paritrana run: stopped, its output was closed by the reader; "
                                                    "the same command finishes the job\n"), told


def test_export_to_the_standard_output_a_pipe_or_a_link_writes_into_it_and_a_mismatched_name_is_refused(
        demo, tmp_path):
    """`--out -` is the standard output; a pipe or a device (/dev/stdout) is written into
    (the export used to rename a file over it: as root, /dev/stdout became a regular file);
    a link keeps naming the file it named; `--out x.csv --format parquet` is refused."""
    import threading
    import zipfile

    published = _latest(demo) / "rankings_umk.csv"
    home = ("--home", str(demo.home_dir))

    def export(fmt: str, out: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "paritrana.cli", "export", "--category", "umk", "--year", "2024",
                               "--format", fmt, "--out", out, *home], capture_output=True, timeout=300)

    piped = export("csv", "-")
    assert piped.returncode == 0 and piped.stdout == published.read_bytes()
    # the note tells the user what the pipe received
    rows = {f["file"]: f["rows"] for f in json.loads((published.parent / "manifest.json").read_text())["files"]}
    rows = rows["rankings_umk.csv"]
    assert piped.stderr.decode().strip() == (f"wrote -: rankings_umk, {rows:,} rows, of publication "
                                             f"{published.parent.name} (year 2024, as of 2024-12-31)")
    workbook = export("xlsx", "-")
    assert workbook.returncode == 0
    assert "xl/workbook.xml" in zipfile.ZipFile(io.BytesIO(workbook.stdout)).namelist()

    fifo, received = tmp_path / "pipe", []
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    into_pipe = export("parquet", str(fifo))
    reader.join(60)
    assert into_pipe.returncode == 0, into_pipe.stderr
    assert received == [published.with_suffix(".parquet").read_bytes()]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not list(tmp_path.glob(".*"))

    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("an older export\n")
    link.symlink_to(real.name)
    assert export("csv", str(link)).returncode == 0
    assert link.is_symlink() and real.read_bytes() == published.read_bytes()

    refused = export("parquet", str(tmp_path / "umk.csv"))
    assert refused.returncode == 1 and not (tmp_path / "umk.csv").exists()
    assert "names a .csv file, but --format is parquet: name it umk.parquet" in refused.stderr.decode()


def test_an_export_the_disk_refuses_names_the_file_and_what_to_do(demo):
    """/dev/full refuses every write with ENOSPC, as a full disk does: the error names what
    was being written (Python's names no file for a stream) and says what to do, without a
    run's words about loaded files."""
    for out in ("/dev/full", "-"):
        with open("/dev/full", "wb") as full:
            result = subprocess.run([PYTHON, "-m", "paritrana.cli", "export", "--category", "umk", "--year", "2024",
                                     "--format", "csv", "--out", out, "--home", str(demo.home_dir)],
                                    stdout=full, stderr=subprocess.PIPE, text=True)
        target = "/dev/full" if out != "-" else "the standard output"
        assert result.returncode == 1, result.stderr
        assert f"paritrana export: error: [Errno 28] No space left on device (writing {target}). The machine " \
               "stopped the command, not the data: free disk space or memory and run the same command again" \
               in result.stderr
        assert "loaded" not in result.stderr and "Traceback" not in result.stderr


def test_a_write_the_disk_refuses_says_what_it_was_writing(tmp_path):
    """GX's stores and Python's streams name no file when the disk refuses a write: the
    gate and export say what they were writing; errors that name their file, and a reader
    gone away, pass unchanged."""
    from paritrana.warehouse import machine_failure, writing_to

    with pytest.raises(OSError, match=r"^\[Errno 28\] No space left on device \(writing the gate's results\)$") as e:
        with writing_to("the gate's results"), open("/dev/full", "wb") as full:
            full.write(b"x" * 100)
            full.flush()
    assert machine_failure(e.value)  # still the machine's stop, said as such
    with pytest.raises(FileNotFoundError) as named, writing_to("elsewhere"):
        (tmp_path / "no" / "such").write_text("x")
    assert named.value.filename == str(tmp_path / "no" / "such") and "writing elsewhere" not in str(named.value)
    with pytest.raises(BrokenPipeError), writing_to("a pipe"):
        raise BrokenPipeError(32, "Broken pipe")


def test_export_of_an_earlier_publication_by_its_run_id(demo, tmp_path, monkeypatch):
    """`--run RUN_ID` exports a publication other than the latest (the one an award was
    announced on, say); an unknown one, or one whose files were pruned, is told so."""
    import datetime as dt

    from paritrana import methodology
    from paritrana.publication import KEEP_PUBLICATIONS_ENV, publish

    work = demo.copy(tmp_path / "d")
    first = _latest(work)
    config = methodology.load(None, work.home_dir, 2024)
    publish(work.paths, "provisional", 2024, dt.date(2024, 11, 30), config, [])
    assert _latest(work).name == "provisional"

    def export(run: str, out: Path) -> subprocess.CompletedProcess:
        return paritrana("export", "--category", "pemda_kabkota", "--year", "2024", "--format", out.suffix[1:],
                         *(("--run", run) if run else ()), "--out", str(out), "--home", str(work.home_dir))

    def run_sheet(path: Path) -> dict:
        from openpyxl import load_workbook
        return {k: v for k, v in load_workbook(path)["Run"].iter_rows(values_only=True)}

    assert export(first.name, tmp_path / "first.xlsx").returncode == 0
    assert export("", tmp_path / "latest.xlsx").returncode == 0
    assert (run_sheet(tmp_path / "first.xlsx")["run_id"], run_sheet(tmp_path / "first.xlsx")["as_of"]) == \
        (first.name, "2024-12-31")
    assert (run_sheet(tmp_path / "latest.xlsx")["run_id"], run_sheet(tmp_path / "latest.xlsx")["as_of"]) == \
        ("provisional", "2024-11-30")
    assert export(first.name, tmp_path / "first.csv").returncode == 0
    assert (tmp_path / "first.csv").read_bytes() == (first / "rankings_pemda_kabkota.csv").read_bytes()

    unknown = export("20240101T000000Z-0000", tmp_path / "x.csv")
    assert unknown.returncode == 1 and not (tmp_path / "x.csv").exists()
    assert f"no publication '20240101T000000Z-0000' for 2024 under {work.home_dir / 'published' / '2024'}, " \
           "which holds 2" in unknown.stderr
    assert export("../../2024/" + first.name, tmp_path / "x.csv").returncode == 1

    monkeypatch.setenv(KEEP_PUBLICATIONS_ENV, "1")
    publish(work.paths, "final", 2024, dt.date(2024, 12, 31), config, [])
    pruned = export(first.name, tmp_path / "x.csv")
    assert pruned.returncode == 1 and f"the files of publication {first.name} were removed" in pruned.stderr

def _cell_text(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def _same(cell, text: str) -> bool:
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return abs(cell - float(text)) < 1e-9
    return str(cell) == text


def test_unknown_category_or_nothing_published_is_a_clear_error(tmp_path):
    result = paritrana("export", "--category", "umk", "--year", "2031", "--format", "csv", "--out",
                       str(tmp_path / "x.csv"), "--home", str(tmp_path / "home"))
    assert result.returncode == 1 and "nothing published for 2031" in result.stderr


def _minimum_wages(work, bengkulu: int, produced_at: str = "2025-01-05T01:00:00+07:00") -> None:
    """A delivery of 2024's provincial minimum wages whose Bengkulu wage is `bengkulu`."""
    write_delivery(work.landing, "minimum_wages__2025-01-05.csv",
                   f"region_code,year,minimum_wage_idr\n17,2024,{bengkulu}\n18,2024,2893070\n19,2024,3640000\n",
                   produced_at=produced_at)


def _run(work):
    return paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))


def test_blocking_failure_exits_2_names_the_check_and_keeps_latest(demo, tmp_path):
    """A UMP keyed with a digit too many passes ingestion but is implausible: blocking."""
    work = demo.copy(tmp_path / "the team's copy")
    before = _latest(work)
    _minimum_wages(work, 25070790)  # a digit too many
    result = _run(work)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    # the check, and the row it failed on by the asset's identifying columns, with its value
    assert "FAILED raw.minimum_wages.expect_column_values_to_be_between(minimum_wage_idr) on region_code=17 " \
        "year=2024 (minimum_wage_idr 25070790): observed {'unexpected_count': 1," in result.stderr
    # the report's address opens as it is printed, a space and an apostrophe in HOME included
    report = next(line.split("report: ", 1)[1] for line in result.stderr.splitlines() if "report: " in line)
    assert report.startswith("file:///") and " " not in report
    assert Path(unquote(urlparse(report).path)) == \
        work.home_dir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert _latest(work) == before
    _assert_publication_intact(before)
    reports = sorted((work.home_dir / "reports").glob("*/gate.json"), key=os.path.getmtime)
    assert json.loads(reports[-1].read_text())["passed"] is False

    # the way back: the provider's correction, the same name with a later produced_at; the
    # next run loads it in place of the bad file, says so, and publishes
    _minimum_wages(work, 2507079, produced_at="2025-01-05T09:00:00+07:00")
    fixed = _run(work)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]
    assert "  corrected   minimum_wages__2025-01-05.csv: its rows replace those loaded from " \
           "minimum_wages__2025-01-05.csv for the same extract and business date" in fixed.stdout
    assert _latest(work) != before


def test_the_gate_task_fails_for_good_on_a_failed_check_and_retries_on_a_busy_warehouse(demo, tmp_path,
                                                                                       monkeypatch):
    """Under a scheduler a failed check is not retried (it would fail again, later), while
    a warehouse busy with another writer, or another run's turn, is: before 0.3.12 the gate
    had no retries at all, and a backfill's runs failed their gates on each other's locks."""
    import datetime as dt

    from airflow.sdk.exceptions import AirflowFailException

    from paritrana import run_turns
    from paritrana.warehouse import WarehouseBusy, exclusive

    work = demo.copy(tmp_path / "g")
    _minimum_wages(work, 25070790)
    assert _run(work).returncode == 2
    gate = _dag_task("quality_gate", monkeypatch, work, run_id="night",
                     logical_date=dt.datetime(2025, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=7))))
    with pytest.raises(AirflowFailException, match=r"FAILED raw\.minimum_wages\.expect_column_values_to_be_between"):
        gate()
    with exclusive(work.paths), pytest.raises(WarehouseBusy, match="another run is writing") as busy:
        gate()
    assert not isinstance(busy.value, AirflowFailException)
    other = run_turns.Run("paritrana_nightly", "backfill__other", "2026-12-06T00:00:00+00:00")
    run_turns.hold(work.paths, other, lambda run: False)  # "night" ended; the other run's task writes now
    monkeypatch.setattr("paritrana.orchestration._this_run", lambda context: (
        run_turns.Run("paritrana_nightly", "night", "2026-12-06T00:00:01+00:00"), lambda run: True))
    with pytest.raises(run_turns.NotYourTurn, match="run backfill__other of paritrana_nightly"):
        gate()


def test_a_file_mostly_quarantined_is_a_warning_that_names_it_and_publishes(demo, tmp_path):
    """The contract loads a file whose every row fails (dates in DD/MM/YYYY): the gate warns,
    without blocking, and the summary names the file with its reasons."""
    work = demo.copy(tmp_path / "w")
    rows = [participant(kpj=f"{17100000000 + i:011d}", birth_date="05/08/1990", effective_date="01/06/2024")
            for i in range(40)]
    write_delivery(work.landing, "participants__2025-01-06.csv", csv_text(PARTICIPANT_HEADER, rows),
                   produced_at="2025-01-06T01:00:00+07:00")
    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "  quarantined participants__2025-01-06.csv: every row (40) quarantined: BAD_TYPE:birth_date 40, " \
           "BAD_TYPE:effective_date 40" in result.stdout
    warned = [line for line in result.stdout.splitlines() if line.startswith("  warning ")]
    assert len(warned) == 1 and warned[0].startswith(
        "  warning raw.files_mostly_quarantined.expect_column_values_to_be_between(quarantined_share) "
        "on file_name=participants__2025-01-06.csv (quarantined_share 1.0): observed {'unexpected_count': 1,")
    manifest = json.loads((_latest(work) / "manifest.json").read_text())
    check = next(c for c in manifest["quality_checks"] if "files_mostly_quarantined" in c["name"])
    assert check["passed"] is False and check["severity"] == "warning"
    assert check["observed"]["rows"] == [{"file_name": "participants__2025-01-06.csv", "quarantined_share": 1.0}]
    assert all(c["passed"] for c in json.loads((_latest(demo) / "manifest.json").read_text())["quality_checks"]
               if "files_mostly_quarantined" in c["name"])


def test_a_daily_extract_that_stopped_arriving_is_a_warning_that_names_it(demo, tmp_path):
    """The contract loads what arrives, so a provider that stopped sending claims left the
    night's indicators built on old data without a word. The gate now warns, naming each
    daily extract whose latest business date lies more than PARITRANA_MAX_DAYS_BEHIND (2)
    before the as-of date, and publishes; the demo's own run (as of 2024-12-31, with files
    up to 2025-01-02) is current."""
    manifest = json.loads((_latest(demo) / "manifest.json").read_text())
    freshness = [c for c in manifest["quality_checks"] if c["name"].startswith("marts.delivery_freshness.")]
    assert len(freshness) == 2 and all(c["passed"] for c in freshness), freshness

    work = demo.copy(tmp_path / "f")
    write_delivery(work.landing, "participants__2025-01-05.csv",
                   csv_text(PARTICIPANT_HEADER, [participant(kpj="17999999991", effective_date="2025-01-05")]),
                   produced_at="2025-01-06T01:10:00+07:00")
    provisional = ("run", "--landing", str(work.landing), "--year", "2025", "--as-of", "2025-01-06",
                   "--home", str(work.home_dir))
    lenient = paritrana(*provisional, env={"PARITRANA_MAX_DAYS_BEHIND": "4"})
    assert lenient.returncode == 0, lenient.stdout[-2000:] + lenient.stderr[-2000:]
    assert "warning marts.delivery_freshness" not in lenient.stdout

    result = paritrana(*provisional)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    warned = [line for line in result.stdout.splitlines() if "warning marts.delivery_freshness" in line]
    assert len(warned) == 1 and warned[0].startswith(
        "  warning marts.delivery_freshness.expect_column_values_to_be_between(days_behind) on "), warned
    named = re.findall(r"extract=(\w+) \(days_behind (\d+)\)", warned[0])
    assert sorted(named) == [("claims", "4"), ("contributions", "4"), ("employers", "4")]  # participants: 1 day
    with duckdb.connect(str(work.home_dir / "analytics.duckdb"), read_only=True) as con:
        assert con.execute("select extract, last_business_date::varchar, days_behind from marts.delivery_freshness "
                           "where extract = 'participants'").fetchall() == [("participants", "2025-01-05", 1)]
    # 2025 has no references yet: the eligibility warning says why each region has no rank
    eligible = "  warning marts.pemda_indicators.expect_column_values_to_be_in_set(eligible) on "
    eligibility = [line for line in result.stdout.splitlines() if line.startswith(eligible)]
    assert len(eligibility) == 1, result.stdout[-3000:]
    named = re.findall(r"entity_code=([\d.]+) ineligible_reason=(\w+) \(eligible False\)", eligibility[0])
    assert len(named) == 5 and {reason for _, reason in named} == {"MISSING_REFERENCE"}, eligibility
    # and the check's page in Data Docs names the same rows by the same columns
    site = work.home_dir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    page = max((site / "validations" / "marts" / "pemda_indicators").rglob("*.html"), key=lambda f: f.stat().st_mtime)
    text = page_text(page)
    assert "Sampled Unexpected Values Count entity_code ineligible_reason False 5 " \
        + ", ".join(code for code, _ in named) + " " + ", ".join(reason for _, reason in named) in text, text[-3000:]


def test_a_failed_check_names_its_first_rows_and_counts_the_rest(tmp_path):
    """An asset `identified_by` columns has its failing rows named by them (the first
    ROWS_SHOWN, then how many more); an asset without them is named by its check alone, and
    a malformed `identified_by` is refused with the suite's file and asset."""
    from paritrana.quality.gate import ROWS_SHOWN, failed_check_line, load_suites

    rows = [{"region_code": f"17.0{i}", "year": 2024, "minimum_wage_idr": 20000000 + i} for i in range(ROWS_SHOWN)]
    check = {"name": "raw.minimum_wages.expect_column_values_to_be_between(minimum_wage_idr)",
             "column": "minimum_wage_idr", "threshold": {"max_value": 15000000},
             "observed": {"unexpected_count": ROWS_SHOWN + 7, "sample": [20000000], "rows": rows}}
    line = failed_check_line(check)
    assert line.startswith("FAILED raw.minimum_wages.expect_column_values_to_be_between(minimum_wage_idr) on "
                           "region_code=17.00 year=2024 (minimum_wage_idr 20000000); region_code=17.01 year=2024 "
                           "(minimum_wage_idr 20000001); ")
    assert f"(minimum_wage_idr {20000000 + ROWS_SHOWN - 1}) and 7 more: observed " \
           "{'unexpected_count': 12, 'sample': [20000000]}, expected {'max_value': 15000000}" in line
    # an identifying column without a value (an eligible entity's ineligible_reason) is left out
    scores = {"name": "marts.umk_indicators.expect_column_values_to_be_between(total_score)", "column": "total_score",
              "threshold": {"max_value": 100}, "observed": {"unexpected_count": 2, "sample": [101.0], "rows": [
                  {"entity_code": "BK000004", "ineligible_reason": None, "total_score": 101.0},
                  {"entity_code": "BK000005", "ineligible_reason": "ARREARS", "total_score": 102.0}]}}
    assert failed_check_line(scores).startswith(
        "FAILED marts.umk_indicators.expect_column_values_to_be_between(total_score) on entity_code=BK000004 "
        "(total_score 101.0); entity_code=BK000005 ineligible_reason=ARREARS (total_score 102.0): observed ")
    aggregate = {"name": "marts.referential_checks.expect_column_max_to_be_between(orphan_share)",
                 "column": "orphan_share", "threshold": {"max_value": 0.01}, "observed": 0.2}
    assert failed_check_line(aggregate) == "FAILED marts.referential_checks.expect_column_max_to_be_between" \
        "(orphan_share): observed 0.2, expected {'max_value': 0.01}"

    (tmp_path / "bad.yml").write_text("suite: bad\nassets:\n  files:\n    identified_by: file_name\n"
                                      "    query: select 1\n    expectations: []\n")
    with pytest.raises(ValueError, match=r"bad\.yml: files: identified_by must be a list of column names"):
        load_suites(tmp_path)


def test_referential_orphans_over_the_gate_exit_2(demo, tmp_path):
    work = demo.copy(tmp_path / "w")
    before = _latest(work)
    with duckdb.connect(str(work.paths.reader_copy), read_only=True) as con:
        states = con.execute("select count(*) from intermediate.int_participant_state").fetchone()[0]
    orphans = int(states * 0.02) + 1
    rows = [participant(kpj=f"{99000000000 + i:011d}", region_code="19.99", segment="BPU", npp="",
                        occupation="PETANI", funding="SELF", jp="0", effective_date="2024-06-01")
            for i in range(orphans)]
    write_delivery(work.landing, "participants__2025-01-06.csv", csv_text(PARTICIPANT_HEADER, rows),
                   produced_at="2025-01-06T01:00:00+07:00")
    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "marts.referential_checks.expect_column_max_to_be_between(orphan_share)" in result.stderr
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        assert con.execute("select orphans from marts.referential_checks where check_name = "
                           "'participants_region_code'").fetchone()[0] == orphans
    assert _latest(work) == before


def test_kill_during_publication_keeps_previous_latest_and_rerun_publishes(demo, tmp_path):
    work = demo.copy(tmp_path / "w")
    before = _latest(work)
    proc = subprocess.Popen([sys.executable, "-m", "paritrana.cli", "run", "--landing", str(work.landing),
                             "--year", "2024", "--home", str(work.home_dir)],
                            env={**os.environ, "PARITRANA_TEST_PUBLISH_PAUSE": "60"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = work.home_dir / "published" / "2024"
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.is_file() for p in root.glob(".*.partial/*")):
        assert proc.poll() is None, "the run ended before publishing"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(root.glob(".*.partial"))  # it really was killed mid-publication
    assert _latest(work) == before
    _assert_publication_intact(before)
    result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert _latest(work) != before and not any(root.glob(".*.partial"))
    _assert_publication_intact(_latest(work))


def test_readers_query_during_a_run(demo, tmp_path):
    """Analysts read HOME/analytics.duckdb (Python and the DuckDB CLI) while a run writes."""
    work = demo.copy(tmp_path / "w")
    cli = Path(sys.executable).parent / "duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "paritrana.cli", "run", "--landing", str(work.landing),
                             "--year", "2024", "--home", str(work.home_dir), "--full-refresh"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reads = cli_reads = 0
    while proc.poll() is None:
        with duckdb.connect(str(work.paths.reader_copy), read_only=True) as con:
            assert con.execute("select count(*) from marts.rankings_umk").fetchone()[0] > 0
        reads += 1
        out = subprocess.run([str(cli), "-readonly", str(work.paths.reader_copy), "-csv", "-noheader", "-c",
                              "select count(*) from marts.rankings_pemda_provinsi"],
                             capture_output=True, text=True)
        assert out.returncode == 0 and int(out.stdout.strip()) > 0, out.stderr
        cli_reads += 1
        time.sleep(0.3)
    assert proc.returncode == 0
    assert reads >= 5 and cli_reads >= 5


def test_gx_duckdb_workaround_still_needed(tmp_path):
    """Fails loudly when a GX upgrade fixes DuckDB (drop the work-around) or breaks it."""
    import great_expectations as gx

    from paritrana.quality import gx_duckdb

    db = tmp_path / "t.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table t as select range as x from range(10)")

    def run(name):
        context = gx.get_context(mode="ephemeral")
        ds = context.data_sources.add_sql(name, connection_string=f"duckdb:///{db}")
        batch = ds.add_query_asset("q", query="select * from t").add_batch_definition_whole_table("all")
        result = batch.get_batch().validate(gx.expectations.ExpectColumnValuesToBeBetween(column="x", min_value=0,
                                                                                            max_value=9))
        gx_duckdb.release_connections()
        return result.success

    gx_duckdb.remove()
    try:
        assert run("without") is False
    finally:
        gx_duckdb.apply()
    assert run("with") is True


def test_the_gate_imports_gx_without_running_scipy_stats_and_gx_still_gets_it_when_used():
    """gx_import defers scipy.stats (about 1.1 s of GX's 3.7 s import, for expectations the
    gate never runs): after the gate's import it is registered but not executed, and GX's
    KL-divergence expectation, which imports it, still computes with the real module. In a
    process of its own: this one may have imported scipy.stats already."""
    code = ("import sys\n"
            "from paritrana.quality.gx_import import load\n"
            "gx = load()\n"
            "print(type(sys.modules['scipy.stats']).__name__)\n"
            "from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl\n"
            "print(kl.stats is sys.modules['scipy.stats'], float(kl.stats.norm.cdf(0.0)))\n"
            "print(type(sys.modules['scipy.stats']).__name__, hasattr(kl.stats, 'entropy'))\n")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GX_ANALYTICS_ENABLED": "False"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:3] == ["_LazyModule", "True 0.5", "module True"], out.stdout


def test_a_gate_writes_gxs_configuration_once_and_reads_no_configuration_variables(demo, tmp_path):
    """GX rewrites its whole configuration file for each asset and batch definition added
    one by one, and re-reads config_variables.yml each time it reads a variable (35 writes
    and about 600 reads a gate, a second of the demo's gate). The gate adds its assets with
    the datasource, and its project (from an earlier version too) drops the configuration
    variables, which it never used. Counted by the operating system's opens, in a process
    of its own (an audit hook stays for the life of a process)."""
    work = demo.copy(tmp_path / "d")
    config = work.paths.home / "gx" / "gx" / "great_expectations.yml"
    text = config.read_text()
    assert "config_variables_file_path:\n" in text  # the demo's gate dropped them already
    config.write_text(text.replace("config_variables_file_path:\n",  # as a project of 0.3.18 or before
                                   "config_variables_file_path: uncommitted/config_variables.yml\n"))
    code = ("import json, sys\n"
            "from pathlib import Path\n"
            "opened = {'variables': 0, 'configuration_written': 0}\n"
            "def hook(event, args):\n"
            "    if event == 'open' and isinstance(args[0], str):\n"
            "        name, mode = Path(args[0]).name, args[1] or ''\n"
            "        opened['variables'] += name == 'config_variables.yml'\n"
            "        opened['configuration_written'] += name == 'great_expectations.yml' and any(c in mode for c in 'wax+')\n"
            "sys.addaudithook(hook)\n"
            "from paritrana import methodology\n"
            "from paritrana.quality.gate import validate\n"
            "from paritrana.settings import resolve_home\n"
            "for night in (1, 2):\n"
            "    opened.update(variables=0, configuration_written=0)\n"
            "    gate = validate(resolve_home(sys.argv[1]), f'20990101T00000{night}Z-abcd', methodology.load(year=2024))\n"
            "    print(json.dumps([opened, sum(c.passed for c in gate.checks), len(gate.checks)]))\n")
    out = subprocess.run([PYTHON, "-c", code, str(work.home_dir)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GX_ANALYTICS_ENABLED": "False"})
    assert out.returncode == 0, out.stderr[-3000:]
    (first, passed1, checks1), (second, passed2, checks2) = [json.loads(line) for line in out.stdout.split("\n")[:2]]
    assert passed1 == checks1 == passed2 == checks2 > 50
    assert first["variables"] > 0 and "config_variables_file_path:\n" in config.read_text()  # dropped on the way
    assert second == {"variables": 0, "configuration_written": 1}, second
    assert first["configuration_written"] <= 2, first  # and once more to drop the variables


def test_a_deferred_module_is_the_real_one_on_first_use_and_nothing_else_is_deferred(monkeypatch):
    """gx_import.defer leaves alone a module already imported and one that is not installed
    (GX's own import then says so), and a deferred one works as imported."""
    from paritrana.quality.gx_import import defer

    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    assert defer("colorsys") and type(sys.modules["colorsys"]).__name__ == "_LazyModule"
    import colorsys

    assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert type(sys.modules["colorsys"]).__name__ == "module"
    assert not defer("colorsys") and not defer("json")  # imported already
    assert not defer("no_such_package.stats") and "no_such_package.stats" not in sys.modules


def test_compute_once_assets_report_their_counts_and_leave_nothing(bengkulu, tmp_path):
    """Aggregates over the large tables are computed once into schema _gate for GX; a
    failing check still names itself and its observed count, and _gate is gone after."""
    from paritrana import methodology
    from paritrana.quality.gate import COMPUTED_SCHEMA, load_suites, validate

    work = bengkulu.copy(tmp_path / "b")
    db = str(work.paths.warehouse)
    with duckdb.connect(db) as con:  # one negative wage: raw rules forbid it, the gate must see it too
        # the states are a view over the raw rows: the planted value goes into the row behind one
        con.execute("update raw.participants set monthly_wage_idr = -1 where (_load_id, _line) = "
                    "(select (load_id, line_number) from intermediate.int_participant_state "
                    "where kpj = (select min(kpj) from intermediate.int_participant_state))")
    assert any(a.get("compute_once") for s in load_suites() for a in s["assets"].values())
    gate = validate(work.paths, "compute-once", methodology.load(None, work.home_dir, 2024), ["raw"])
    failed = [c for c in gate.checks if not c.passed]
    assert [(c.asset, c.column, c.severity) for c in failed] == \
        [("participant_states", "monthly_wage_negative", "blocking")]
    assert failed[0].observed["sample"] == [1]
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("select count(*) from duckdb_schemas() where schema_name = ?",
                           [COMPUTED_SCHEMA]).fetchall() == [(0,)]


def test_gate_that_raises_midway_leaves_no_aggregates_and_no_earlier_report(bengkulu, tmp_path, monkeypatch):
    """A gate that fails with an exception after computing its aggregates (here GX's
    checkpoint, made to raise) still drops schema _gate. It also leaves no report: the
    earlier attempt's gate.json stayed, and the DAG's summary named its checks as this
    attempt's."""
    import great_expectations as gx
    import pytest
    from paritrana import methodology
    from paritrana.orchestration import gate_report
    from paritrana.quality.gate import COMPUTED_SCHEMA, report_path, validate

    work = bengkulu.copy(tmp_path / "b")
    config = methodology.load(None, work.home_dir, 2024)
    assert validate(work.paths, "raises", config, ["raw"]).passed  # a first attempt of the run
    assert gate_report(work.paths, "raises")["passed"]

    def broken_run(self, *args, **kwargs):
        raise RuntimeError("checkpoint failed")
    monkeypatch.setattr(gx.Checkpoint, "run", broken_run)
    with pytest.raises(RuntimeError, match="checkpoint failed"):
        validate(work.paths, "raises", config, ["raw"])
    assert not report_path(work.paths, "raises").exists() and gate_report(work.paths, "raises") is None
    with duckdb.connect(str(work.paths.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from duckdb_schemas() where schema_name = ?",
                           [COMPUTED_SCHEMA]).fetchall() == [(0,)]


def test_gx_keeps_the_most_recent_gates_and_archives_the_rest(demo, tmp_path, monkeypatch):
    """GX's store (which it lists whole on every Data Docs build) holds only the most recent
    PARITRANA_DATA_DOCS_RUNS gates; older results move, unchanged, to HOME/gx/archive, and
    every run keeps its gate.json."""
    from paritrana import methodology
    from paritrana.quality.gate import KEEP_GATES_ENV, keep_gates, validate

    work = demo.copy(tmp_path / "d")
    store = work.home_dir / "gx" / "gx" / "uncommitted" / "validations"
    archive = work.home_dir / "gx" / "archive" / "validations"
    first_run = {p.relative_to(store): p.read_bytes() for p in store.rglob("*.json")}
    assert first_run and not archive.exists()
    monkeypatch.setenv(KEEP_GATES_ENV, "2")
    config = methodology.load(None, work.home_dir, 2024)
    for n in (1, 2, 3):
        validate(work.paths, f"keep-{n}", config, ["raw"])

    def run_names(root: Path) -> set[str]:
        return {p.parent.parent.name for p in root.rglob("*.json")}
    assert run_names(store) == {"paritrana_keep-2", "paritrana_keep-3"}
    assert run_names(archive) == {p.parts[-3] for p in first_run} | {"paritrana_keep-1"}
    for relative, content in first_run.items():  # moved, not rewritten
        assert (archive / relative).read_bytes() == content
    assert not [d for d in store.rglob("*") if d.is_dir() and not any(d.iterdir())]
    index = (work.home_dir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()
    assert "paritrana_keep-3" in index and "paritrana_keep-2" in index and "paritrana_keep-1" not in index
    assert all((work.home_dir / "reports" / f"keep-{n}" / "gate.json").exists() for n in (1, 2, 3))
    for bad in ("0", "many"):  # refused before any work: no result stored, no report written
        monkeypatch.setenv(KEEP_GATES_ENV, bad)
        with pytest.raises(ValueError, match=KEEP_GATES_ENV):
            keep_gates()
        with pytest.raises(ValueError, match=KEEP_GATES_ENV):
            validate(work.paths, f"refused-{bad}", config, ["raw"])
        assert not (work.home_dir / "reports" / f"refused-{bad}").exists()
        assert "paritrana_refused" not in " ".join(run_names(store))


def test_old_publications_keep_their_manifest_and_lose_their_files_when_bounded(demo, tmp_path, monkeypatch):
    """PARITRANA_KEEP_PUBLICATIONS=N: only the N most recent publications of a year keep
    their files; older ones keep manifest.json and say in pruned.json what went and why.
    The one `latest` names is never pruned. Unset, every publication keeps its files."""
    import datetime as dt

    from paritrana import methodology
    from paritrana.publication import KEEP_PUBLICATIONS_ENV, PRUNED, keep_publications, prune_publications, publish

    work = demo.copy(tmp_path / "d")
    root = work.home_dir / "published" / "2024"
    config = methodology.load(None, work.home_dir, 2024)
    original = _latest(work)

    def publish_as(run_id: str) -> Path:
        time.sleep(1.1)  # manifests order publications by their creation time, in seconds
        return publish(work.paths, run_id, 2024, dt.date(2024, 12, 31), config, []).folder

    monkeypatch.delenv(KEEP_PUBLICATIONS_ENV, raising=False)
    first = publish_as("keep-1")
    assert all(len(list(f.iterdir())) == 10 for f in (original, first))  # the default keeps everything

    monkeypatch.setenv(KEEP_PUBLICATIONS_ENV, "2")
    second, third = publish_as("keep-2"), publish_as("keep-3")
    assert _latest(work) == third
    for kept in (second, third):
        _assert_publication_intact(kept)
        assert not (kept / PRUNED).exists()
    for pruned in (original, first):
        assert sorted(p.name for p in pruned.iterdir()) == ["manifest.json", PRUNED]
        record = json.loads((pruned / PRUNED).read_text())
        manifest = json.loads((pruned / "manifest.json").read_text())
        assert record["removed"] == sorted([f["file"] for f in manifest["files"]] + ["basis"])
        assert KEEP_PUBLICATIONS_ENV in record["reason"]

    # An operator pointed `latest` back at an older publication: it keeps its files.
    os.replace(root / "latest", root / "latest.old")
    os.symlink(second.name, root / "latest")
    assert prune_publications(root, 1) == []  # second is latest, third is the newest
    _assert_publication_intact(second)

    for bad in ("0", "some"):  # refused before anything is written
        monkeypatch.setenv(KEEP_PUBLICATIONS_ENV, bad)
        with pytest.raises(ValueError, match=KEEP_PUBLICATIONS_ENV):
            keep_publications()
        with pytest.raises(ValueError, match=KEEP_PUBLICATIONS_ENV):
            publish(work.paths, f"refused-{bad}", 2024, dt.date(2024, 12, 31), config, [])
        assert not list(root.glob(f"*refused-{bad}*"))


def test_latest_follows_every_run_or_on_request_the_latest_as_of_date(demo, tmp_path, monkeypatch):
    """outputs.md §2: every publication becomes the latest, so a backfill of earlier
    nights takes `latest` back in time; the run says so. With PARITRANA_LATEST=as-of a
    publication as of an earlier date than the latest's is published beside it, complete,
    and `latest` and the analysts' copy stay with the later date."""
    import datetime as dt

    from paritrana import methodology
    from paritrana.pipeline import check_settings
    from paritrana.publication import LATEST_ENV, publish

    work = demo.copy(tmp_path / "d")
    root = work.home_dir / "published" / "2024"
    original = _latest(work)
    config = methodology.load(None, work.home_dir, 2024)
    copy = work.home_dir / "analytics.duckdb"

    def run(as_of: str, policy: str | None) -> tuple[subprocess.CompletedProcess, Path]:
        result = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--as-of", as_of,
                           "--home", str(work.home_dir), env={LATEST_ENV: policy} if policy else None,
                           unset=() if policy else (LATEST_ENV,))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        run_id = result.stdout.split()[1].rstrip(":")
        return result, Path(json.loads((work.home_dir / "runs" / f"{run_id}.json").read_text())["published"])

    def reader_copy() -> tuple[int, str]:
        return copy.stat().st_ino, _sha(copy)

    # On request, a December 1st run is published, not made the latest.
    before = reader_copy()
    december_first, folder = run("2024-12-01", "as-of")
    assert folder != original and _latest(work) == original
    assert _assert_publication_intact(folder)["as_of"] == "2024-12-01"
    assert f"not made the latest ({LATEST_ENV}=as-of): latest stays run {original.name}, as of 2024-12-31" \
        in december_first.stdout
    assert reader_copy() == before  # it still matches the latest publication
    assert f"analysts' copy {copy}: holds" not in december_first.stdout  # and the summary does not claim otherwise
    first_id = december_first.stdout.split()[1].rstrip(":")
    assert json.loads((work.home_dir / "runs" / f"{first_id}.json").read_text())["analysts_copy"] is None

    # The same date as the latest's: the newer run becomes the latest, and nothing is said.
    same_day, folder = run("2024-12-31", "as-of")
    assert _latest(work) == folder
    assert "latest now names" not in same_day.stdout and "not made the latest" not in same_day.stdout
    assert reader_copy() != before
    assert f"\n  analysts' copy {copy}: holds this publication's build (" in same_day.stdout, same_day.stdout[-2000:]
    run_id = same_day.stdout.split()[1].rstrip(":")  # and its run record keeps the line
    assert json.loads((work.home_dir / "runs" / f"{run_id}.json").read_text())["analysts_copy"] in same_day.stdout

    # By default (outputs.md), an earlier date becomes the latest, and the run says what it replaced.
    backfill, folder = run("2024-11-30", None)
    assert _latest(work) == folder
    assert f"latest now names this run, as of 2024-11-30; it named run {same_day.stdout.split()[1].rstrip(':')}, " \
        "as of 2024-12-31, a later date (a backfill?)" in backfill.stdout
    assert f"{LATEST_ENV}=as-of keeps latest at the latest as-of date" in backfill.stdout

    monkeypatch.setenv(LATEST_ENV, "newest")  # refused before any work, and before anything is written
    with pytest.raises(ValueError, match=LATEST_ENV):
        check_settings()
    with pytest.raises(ValueError, match=LATEST_ENV):
        publish(work.paths, "refused", 2024, dt.date(2024, 12, 31), config, [])
    assert not list(root.glob("*refused*")) and _latest(work) == folder


def test_a_link_left_by_a_crash_before_the_last_rename_does_not_stop_the_rerun(demo, tmp_path):
    """A crash between making the new `latest` link and renaming it over the old one
    leaves `.latest.<run_id>`; a re-run of that run (a cleared Airflow task) replaces it."""
    import datetime as dt

    from paritrana import methodology
    from paritrana.publication import publish

    work = demo.copy(tmp_path / "d")
    root = work.home_dir / "published" / "2024"
    os.symlink("cleared", root / ".latest.cleared")
    config = methodology.load(None, work.home_dir, 2024)
    folder = publish(work.paths, "cleared", 2024, dt.date(2024, 12, 31), config, []).folder
    assert _latest(work) == folder and not (root / ".latest.cleared").is_symlink()
    _assert_publication_intact(folder)


def test_a_gx_project_that_cannot_be_read_is_named_and_made_anew_once_moved_aside(demo, tmp_path):
    """HOME/gx/gx/great_expectations.yml is the gate's own; an edit gone wrong used to end
    the run in GX's traceback after the whole load and build. It now names the file and the
    way back, and nothing is published; moved aside, the project is made anew."""
    work = demo.copy(tmp_path / "d")
    config = work.home_dir / "gx" / "gx" / "great_expectations.yml"
    config.write_text("config_version: [\n")
    run = ("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    broken = paritrana(*run)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr, broken.stderr[-3000:]
    assert f"the Great Expectations project under {work.home_dir / 'gx'} cannot be read (" in broken.stderr
    assert f"move {config} aside and run again" in broken.stderr
    assert _latest(work).name == _latest(demo).name  # nothing published
    config.rename(tmp_path / "great_expectations.yml.bad")
    again = paritrana(*run)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert config.is_file() and "checks: 59 passed" in again.stdout


def _dag_task(task_id: str, monkeypatch, work, run_id: str, logical_date, params: dict | None = None):
    """The body of one of the DAG's tasks, to call as a worker would, in a context of our making."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("paritrana_nightly_under_test",
                                                  Path(__file__).parent.parent / "dags" / "paritrana_nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from types import SimpleNamespace

    context = {"run_id": run_id, "logical_date": logical_date, "params": {"year": 2024, **(params or {})},
               "dag": SimpleNamespace(dag_id="paritrana_nightly"),
               "dag_run": SimpleNamespace(start_date=logical_date, run_after=logical_date),
               # Airflow's answer to "is that run live?": no other run is
               "ti": SimpleNamespace(get_dr_count=lambda **kw: 0)}
    monkeypatch.setattr(module, "get_current_context", lambda: context)
    monkeypatch.setenv("PARITRANA_HOME", str(work.home_dir))
    monkeypatch.setenv("PARITRANA_LANDING", str(work.landing))
    return module.paritrana_nightly().get_task(task_id).python_callable  # the factory makes the DAG anew


def test_a_cleared_publish_publishes_only_the_build_its_gate_validated(demo, tmp_path, monkeypatch):
    """Airflow tasks can be cleared one by one. `publish` of an earlier night, cleared after
    a later night's build, published the later marts under the earlier run's id and as-of
    date (manifest 2024-12-30, files 2024-12-31). Now a publication requires the build its
    gate validated, finished, with nothing loaded since; the DAG's task bodies are used."""
    import datetime as dt

    from paritrana import builds, methodology, orchestration
    from paritrana.generator import generate

    work = demo.copy(tmp_path / "d")
    original = _latest(work)
    night, next_night = dt.date(2024, 12, 30), dt.date(2024, 12, 31)
    orchestration.build(work.paths, 2024, night, None)
    orchestration.gate(work.paths, "night", 2024, None)
    orchestration.build(work.paths, 2024, next_night, None)
    with pytest.raises(builds.StaleBuild, match=r"run night cannot publish: its gate validated build \w+, and the "
                                                r"warehouse now holds build \w+ \(built, year 2024, as of 2024-12-31\)"):
        orchestration.publish(work.paths, "night", 2024, night, None)
    assert _latest(work) == original and not (original.parent / "night").exists()
    # The DAG's task fails for good rather than retry: retrying cannot bring the build back.
    from airflow.sdk.exceptions import AirflowFailException
    task = _dag_task("publish", monkeypatch, work, run_id="night",
                     logical_date=dt.datetime(2024, 12, 31, 1, tzinfo=dt.timezone(dt.timedelta(hours=7))))
    with pytest.raises(AirflowFailException, match="run night cannot publish: its gate validated build"):
        task()

    # Its own night, rebuilt and validated, publishes; files and manifest agree on the date.
    orchestration.build(work.paths, 2024, night, None)
    orchestration.gate(work.paths, "night", 2024, None)
    published = Path(orchestration.publish(work.paths, "night", 2024, night, None)["folder"])
    with (published / "rankings_umk.csv").open() as f:
        assert next(csv.DictReader(f))["as_of"] == _assert_publication_intact(published)["as_of"] == "2024-12-30"

    # A build that stopped midway, or a file loaded after the gate, leaves nothing to publish.
    orchestration.gate(work.paths, "later", 2024, None)
    stamp = builds.begin(work.paths, 2024, night, methodology.load(None, work.home_dir, 2024))
    with pytest.raises(builds.StaleBuild, match=rf"now holds build {stamp['id']} \(building"):
        orchestration.publish(work.paths, "later", 2024, night, None)
    orchestration.build(work.paths, 2024, night, None)
    orchestration.gate(work.paths, "later", 2024, None)
    extra = tmp_path / "extra"
    generate(extra, "demo", seed=7)
    os.replace(next(extra.glob("employers__*.csv")), work.landing / "employers__2025-01-09.csv")
    write_control(work.landing / "employers__2025-01-09.csv", sum(1 for _ in (work.landing /
                  "employers__2025-01-09.csv").open()) - 1)
    loaded = orchestration.ingest_group(work.paths, work.landing, "employers", "later")
    assert [f["status"] for f in loaded["files"]] == ["LOADED"]
    with pytest.raises(builds.StaleBuild, match="files were loaded since its build"):
        orchestration.publish(work.paths, "later", 2024, night, None)
    assert _latest(work) == published

    # dbt run by hand (README, The warehouse) after the gate: the marts may have changed, and
    # the stamp the gate validated is gone, whatever that run built.
    orchestration.build(work.paths, 2024, night, None)
    orchestration.gate(work.paths, "by-hand", 2024, None)
    by_hand = subprocess.run([str(Path(sys.executable).parent / "dbt"), "run", "--select", "rankings_umk",
                              "--project-dir", "dbt_project", "--profiles-dir", "dbt_project"],
                             capture_output=True, text=True, cwd=Path(__file__).parent.parent,
                             # its files in the test's folder, not the checkout's dbt_project/target
                             env={**os.environ, "PARITRANA_WAREHOUSE": str(work.paths.warehouse),
                                  "DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")})
    assert by_hand.returncode == 0, by_hand.stdout[-2000:]
    with pytest.raises(builds.StaleBuild, match="now holds no finished build: dbt has run on it since"):
        orchestration.publish(work.paths, "by-hand", 2024, night, None)
    assert _latest(work) == published


def _workbook_with_names(demo, tmp_path, names: list[str]):
    """The umk workbook of a copy of the demo's publication whose first entities are named
    `names`, as a provider could have delivered them; its sheet and its XML."""
    import shutil
    import zipfile

    from openpyxl import load_workbook

    from paritrana.export import write_workbook

    folder = tmp_path / "publication"
    shutil.copytree(_latest(demo), folder)
    ranking = folder / "rankings_umk.csv"
    with ranking.open(newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("entity_name")
    for row, name in zip(rows[1:], names):
        row[column] = name
    with ranking.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    write_workbook(folder, "umk", tmp_path / "umk.xlsx")
    sheet = load_workbook(tmp_path / "umk.xlsx")["umk"]
    xml = zipfile.ZipFile(tmp_path / "umk.xlsx").read("xl/worksheets/sheet1.xml").decode()
    return [sheet.cell(r, column + 1) for r in range(2, 2 + len(names))], xml


def test_a_name_that_looks_like_a_formula_stays_text_in_the_workbook(demo, tmp_path):
    """Entity names come from providers' files. openpyxl writes a string that starts with
    "=" as a formula, so a business named =HYPERLINK(...) became a live link (or worse) in
    the evaluators' workbook. It is written as text; the published CSV keeps it as delivered."""
    formula = '=HYPERLINK("http://example.invalid/?"&A2,"open me")'
    cells, xml = _workbook_with_names(demo, tmp_path, [formula, "=1+1"])
    assert [(c.value, c.data_type) for c in cells] == [(formula, "s"), ("=1+1", "s")]
    assert "<f>" not in xml


def test_a_control_character_in_a_name_is_shown_not_a_failed_workbook(demo, tmp_path):
    """A vertical tab or another control character pasted into a business name is no XML:
    openpyxl refused the whole export (IllegalCharacterError). It is shown as its symbol."""
    cells, _ = _workbook_with_names(demo, tmp_path, ["Toko\x0bMaju\x01", "Warung\tSari\nJaya", " CV A&B <Tbk> "])
    assert [c.value for c in cells] == ["Toko\u240bMaju\u2401", "Warung\tSari\nJaya", " CV A&B <Tbk> "]
    # a record over two lines (a quoted line break) leaves every later row in its place
    with (tmp_path / "publication" / "rankings_umk.csv").open(newline="") as f:
        codes = [row["entity_code"] for row in csv.DictReader(f)]
    sheet = cells[0].parent
    assert [sheet.cell(r, 3).value for r in range(2, sheet.max_row + 1)] == codes

def test_a_latest_that_is_a_folder_is_refused_before_any_work_and_made_a_link_again(demo, tmp_path):
    """A copy of HOME that followed links (cp -L, some backups) turns `latest` into a folder;
    the publication then failed at its very last step ('Is a directory'). The run is refused
    before anything is loaded, saying what the folder holds and what to do."""
    import shutil

    work = demo.copy(tmp_path / "d")
    link = work.home_dir / "published" / "2024" / "latest"
    held = link.resolve()
    link.unlink()
    shutil.copytree(held, link)
    run = ("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    refused = paritrana(*run)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{link} is a folder, not a link (a copy of HOME that followed links?); it holds a copy of publication " \
           f"{held.name}. {held} holds the same: move the folder out of the way and run again" in refused.stderr
    assert "[1/" not in refused.stdout and sorted(p.name for p in link.parent.iterdir()) == [held.name, "latest"]
    shutil.move(link, tmp_path / "old-latest")
    again = paritrana(*run)
    assert again.returncode == 0, again.stderr[-2000:]
    assert link.is_symlink() and _assert_publication_intact(link.resolve())["run_id"] != held.name
