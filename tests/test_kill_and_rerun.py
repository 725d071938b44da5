"""A load killed mid-file leaves the warehouse as before that file; the next run finishes the job."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from paritrana.generator import generate

SCRIPT = """
import sys
from pathlib import Path
from ingestion.loader import ingest
from paritrana.settings import resolve_home
from paritrana.warehouse import writer
with writer(resolve_home(sys.argv[1])) as con:
    ingest(con, Path(sys.argv[2]), b"test-key", sys.argv[3], lambda m: print(m, flush=True))
"""

TABLES = ("participants", "claims", "contributions", "employers")


def _state(home):
    import duckdb
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        out = {t: sorted(con.execute(f"select * exclude (_load_id) from raw.{t}").fetchall(), key=repr) for t in TABLES}
        out["ledger"] = sorted(con.execute("select file_name, status, rows_loaded from raw.load_ledger").fetchall())
        return out
    finally:
        con.close()


def _ingest(home, landing, run_id, kill_after=None):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(home), str(landing), run_id],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if kill_after is None:
        assert proc.wait(timeout=300) == 0
        return None
    # Kill while the large participants file is being loaded.
    for line in proc.stdout:
        if "participants__" in line:
            time.sleep(kill_after)
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def test_killed_load_is_finished_by_the_next_run(tmp_path):
    landing = tmp_path / "in"
    generate(landing, "demo", scale=4.0, days_after=1)
    _ingest(tmp_path / "clean", landing, "clean")
    expected = _state(tmp_path / "clean")

    assert _ingest(tmp_path / "killed", landing, "first", kill_after=0.2) == -signal.SIGKILL
    half = _state(tmp_path / "killed")
    # Killed inside the participants snapshot: none of its rows, no ledger row, earlier files intact.
    assert half["participants"] == [] and half["claims"] == expected["claims"]
    assert not any(name.startswith("participants__") for name, *_ in half["ledger"])
    _ingest(tmp_path / "killed", landing, "rerun")
    assert _state(tmp_path / "killed") == expected
