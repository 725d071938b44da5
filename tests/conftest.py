"""Shared fixtures: real DuckDB warehouses in temporary homes, and hand-made deliveries."""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from paritrana.generator import generate
from paritrana.settings import resolve_home
from paritrana.warehouse import writer

KEY = b"test-key"


def write_delivery(landing: Path, name: str, content: bytes | str, *, control: dict | str | None = None,
                   row_count: int | None = None, produced_at: str = "2025-01-01T01:10:00+07:00") -> Path:
    """A data file plus its control file; `control` overrides fields or replaces the whole text."""
    landing.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    path = landing / name
    if name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    if row_count is None:
        row_count = max(0, data.count(b"\n") - 1) if not name.endswith(".gz") else content.count("\n") - 1
    write_control(path, row_count, control=control, produced_at=produced_at)
    return path


def write_control(path: Path, row_count: int, *, control: dict | str | None = None,
                  produced_at: str = "2025-01-01T01:10:00+07:00") -> None:
    """The control file of a data file already in the landing (extracts.md §1)."""
    extract, _, rest = path.name.partition("__")
    doc = {"extract": extract, "business_date": rest[:10], "schema_version": 1, "row_count": row_count,
           "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "produced_at": produced_at}
    if isinstance(control, dict):
        doc.update(control)
    text = control if isinstance(control, str) else json.dumps(doc)
    Path(str(path) + ".ctl.json").write_text(text)


# The order modules are collected in, measured on two workers in session 39: the longest
# single tests first (the scheduler's 208 s, PostgreSQL's 118 s, the DAG's end to end
# 114 s), then the modules holding the most test time (publication 564 s, warehouse 479 s,
# kill and re-run 236 s, CLI 127 s, then 54 s and less); the modules not named here, the
# short ones, last in file order. xdist hands tests out in collection order; in file order
# a 79 s test came last and the other worker sat idle for 90 s.
LONGEST_FIRST = ("test_scheduler.py", "test_portability.py", "test_dag.py", "test_publication.py",
                 "test_warehouse.py", "test_kill_and_rerun.py", "test_cli.py", "test_explain.py",
                 "test_parse_cache.py", "test_ranking_changes.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: a module's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def parse_cache(tmp_path_factory):
    """dbt's saved parse, shared by every test's new home (paritrana/parse_cache.py) in a
    folder of this session's, shared by its workers, and never the user's own cache."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "parse-cache"
    previous = os.environ.get("PARITRANA_CACHE")
    os.environ["PARITRANA_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("PARITRANA_CACHE", None)
    else:
        os.environ["PARITRANA_CACHE"] = previous


@pytest.fixture
def home(tmp_path):
    return resolve_home(tmp_path / "home")


@pytest.fixture
def load(home):
    """Ingest a landing folder into the test home's warehouse; returns the report."""
    def _load(landing: Path, run_id: str = "test"):
        with writer(home) as con:
            return ingest(con, landing, KEY, run_id)
    return _load


@pytest.fixture
def sql(home):
    def _sql(query: str, params=None):
        con = duckdb.connect(str(home.warehouse), read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()
    return _sql


PARTICIPANT_HEADER = ("kpj,nik,full_name,birth_date,gender,segment,npp,region_code,occupation,funding,funder_code,"
                      "jkk,jkm,jht,jp,jkp,monthly_wage_idr,status,effective_date")


def participant(**overrides) -> dict:
    row = dict(kpj="17012345678", nik="1771014508900003", full_name="Siti Aminah", birth_date="1990-08-05",
               gender="P", segment="PU", npp="BK000123", region_code="17.71", occupation="KARYAWAN",
               funding="EMPLOYER", funder_code="", jkk="1", jkm="1", jht="1", jp="1", jkp="1",
               monthly_wage_idr="3000000", status="ACTIVE", effective_date="2020-01-01")
    row.update(overrides)
    return row


def csv_text(header: str, rows: list[dict]) -> str:
    cols = header.split(",")
    lines = [header] + [",".join(_q(r.get(c, "")) for c in cols) for r in rows]
    return "\n".join(lines) + "\n"


def _q(v: str) -> str:
    v = "" if v is None else str(v)
    return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',"\n') else v


TODAY = dt.date(2024, 12, 31)


# ---------------------------------------------------------------- whole-pipeline fixtures

PYTHON = sys.executable


def page_text(html: Path) -> str:
    """A Data Docs page's words as a reader sees them: no tags, scripts or styles."""
    import re

    page = re.sub(r"<(script|style).*?</\1>", "", html.read_text(), flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def paritrana(*args: str, env: dict | None = None, timeout: int = 600, unset: tuple[str, ...] = (),
              preexec_fn=None) -> subprocess.CompletedProcess:
    """The real command line, in its own process, as a user runs it: with `env` added to
    the environment, the variables in `unset` removed, and `preexec_fn` (operating-system
    limits) applied in the child."""
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return subprocess.run([PYTHON, "-m", "paritrana.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=environment, preexec_fn=preexec_fn)


class Published:
    """A landing folder and a home after one clean `paritrana run`."""

    def __init__(self, root: Path, landing: Path, home_dir: Path, result: subprocess.CompletedProcess):
        self.root, self.landing, self.home_dir, self.result = root, landing, home_dir, result
        self.paths = resolve_home(home_dir)

    def copy(self, target: Path) -> "Published":
        """An independent copy (home and landing) for tests that change things."""
        shutil.copytree(self.root, target, symlinks=True)
        return Published(target, target / "landing", target / "home", self.result)


def _publish(root: Path, profile: str, days: int, **kw) -> Published:
    landing, home_dir = root / "landing", root / "home"
    generate(landing, profile, days_after=days, **kw)
    result = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home_dir))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Published(root, landing, home_dir, result)


@pytest.fixture(scope="session")
def bengkulu(tmp_path_factory) -> Published:
    return _publish(tmp_path_factory.mktemp("bengkulu"), "bengkulu-2024", days=3)


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Published:
    # A space and an apostrophe in the path: every path the product writes into SQL, a
    # URL or a configuration must survive them (a quote once broke `set temp_directory`).
    return _publish(tmp_path_factory.mktemp("demo") / "an analyst's demo", "demo", days=2)
