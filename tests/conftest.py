"""Shared fixtures: real DuckDB warehouses in temporary homes, and hand-made deliveries."""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
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
    extract, _, rest = name.partition("__")
    if row_count is None:
        row_count = max(0, data.count(b"\n") - 1) if not name.endswith(".gz") else content.count("\n") - 1
    doc = {"extract": extract, "business_date": rest[:10], "schema_version": 1, "row_count": row_count,
           "sha256": hashlib.sha256(data).hexdigest(), "produced_at": produced_at}
    if isinstance(control, dict):
        doc.update(control)
    text = control if isinstance(control, str) else json.dumps(doc)
    Path(str(path) + ".ctl.json").write_text(text)
    return path


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
