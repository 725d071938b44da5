"""What Airflow says of a run, asked from outside Airflow's tasks: `paritrana run` finds the
warehouse's turn held (run_turns) and asks whether the holder is still queued or running.

A task asks through Airflow's task API; the command line has no task context, so it asks
Airflow's own command line, in a process of its own (Airflow configures logging and its
database at import, which `run`'s dbt and GX must not inherit). Only a held turn asks, so a
run by hand pays Airflow's start-up (a few seconds) only then.

Which Airflow: the one `AIRFLOW_HOME` names, as `airflow` itself would use; else the one
`paritrana demo` and `dag-test` keep in HOME/airflow (the README's local scheduler uses it
too). An Airflow that does not know the run is not taken to mean the run ended: it may be
another deployment's, so the turn stays held.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

from .airflow_local import embedded_environment
from .run_turns import LIVE_STATES, Run
from .settings import Paths

ASK_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class RunState:
    state: str | None  # Airflow's state of the run; None when Airflow was not asked or does not know it
    said: str  # who answered what, for the run's message

    @property
    def ended(self) -> bool:
        return self.state is not None and self.state not in LIVE_STATES


def state_of(paths: Paths, run: Run) -> RunState:
    if os.environ.get("AIRFLOW_HOME"):
        env, where = dict(os.environ), f"Airflow (AIRFLOW_HOME={os.environ['AIRFLOW_HOME']})"
    elif (paths.home / "airflow" / "airflow.db").exists():
        env, where = {**os.environ, **embedded_environment(paths)}, f"this home's Airflow ({paths.home / 'airflow'})"
    else:
        return RunState(None, f"there is no Airflow to ask (AIRFLOW_HOME is not set, and {paths.home / 'airflow'} "
                              "holds no Airflow database)")
    # `python -m airflow`: this interpreter's Airflow, wherever its scripts went (the official
    # image installs them under ~/.local/bin, not beside python)
    try:
        out = subprocess.run([sys.executable, "-m", "airflow", "dags", "list-runs", run.dag_id, "-o", "json"],
                             capture_output=True, text=True, env=env, timeout=ASK_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as e:
        return RunState(None, f"{where} could not be asked ({e})")
    runs = _listed_runs(out.stdout) if out.returncode == 0 else None
    if runs is None:
        said = (out.stderr.strip() or out.stdout.strip()).splitlines()
        return RunState(None, f"{where} did not answer ({_message(said[-1]) if said else f'exit {out.returncode}'})")
    state = next((r.get("state") for r in runs if r.get("run_id") == run.run_id), None)
    if state is None:
        return RunState(None, f"{where} knows no run {run.run_id} of {run.dag_id}")
    return RunState(state, f"{where} shows it {state}")


def _listed_runs(stdout: str) -> list[dict] | None:
    # The JSON list from the line that starts with "[" to the end: a warning may come before
    # it, and Rich, which prints it, colours it when told to (FORCE_COLOR).
    text = "\n" + _ANSI.sub("", stdout)
    start = text.find("\n[")
    if start < 0:
        return None
    try:
        runs = json.loads(text[start:])
    except ValueError:
        return None
    return runs if isinstance(runs, list) else None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Airflow's log line around its message: "<time> [error    ] <message> [<logger>] key=value"
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+\s+\[\s*\w+\s*\]\s+(?P<message>.*?)(?:\s+\[[\w.]+\](?:\s+\S+=\S*)*)?$")


def _message(line: str) -> str:
    line = _ANSI.sub("", line).strip()
    logged = _LOG_LINE.match(line)
    return logged.group("message") if logged else line
