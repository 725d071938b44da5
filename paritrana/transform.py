"""Building the warehouse with dbt, in-process (dbtRunner): no subprocess start-up per run.

The dbt project's target/ and logs/ live under HOME/dbt, so runs never write into the
checkout and two homes never share compiled state.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from . import heap, parse_cache
from .methodology import DBT_PROJECT_DIR, Methodology
from .settings import Paths
from .warehouse import held_elsewhere, held_elsewhere_stop, machine_failure, machine_stop, machine_text


class BuildFailed(RuntimeError):
    """dbt build failed: the message lists the failing nodes and where the log is."""


@dataclass
class NodeResult:
    name: str
    resource_type: str
    status: str
    seconds: float
    message: str | None = None


@dataclass
class BuildResult:
    seconds: float
    nodes: list[NodeResult] = field(default_factory=list)
    docs: Path | None = None
    rebuilt_because: str | None = None  # why a build not asked to refresh rebuilt in full

    def count(self, resource_type: str, status: str | None = None) -> int:
        return sum(1 for n in self.nodes if n.resource_type == resource_type and (status is None or n.status == status))


# What the warehouse's rows are computed from: a change here can change rows that an
# incremental run would not recompute. Generic tests (tests/) compute none.
MODEL_SOURCES = ("models", "macros", "dbt_project.yml")


def models_fingerprint() -> str:
    """sha256 over the dbt project's models, macros and dbt_project.yml: names, and what
    each file says that can change a row (`_computing_content`). A build by other models
    rebuilds the incremental ones in full (builds.rebuild_reason)."""
    digest = hashlib.sha256()
    for part in MODEL_SOURCES:
        base = DBT_PROJECT_DIR / part
        parse_cache.hash_files(digest, DBT_PROJECT_DIR, (
            f for f in (sorted(base.rglob("*")) if base.is_dir() else [base])
            if f.is_file() and f.suffix in (".sql", ".yml", ".yaml")), read=_computing_content)
    return digest.hexdigest()


def _computing_content(f: Path) -> bytes:
    """SQL and dbt_project.yml as written; a properties YAML (models/, macros/) as its content
    without the descriptions of what it names. A description changes no row: the marts,
    whose descriptions are kept as table comments, are rebuilt by every build, and the docs
    site is generated after each. Without this, editing one sentence of documentation cost
    the next night a full rebuild (a minute at national 1.0)."""
    if f.suffix == ".sql" or f.parent == DBT_PROJECT_DIR:
        return f.read_bytes()
    try:
        content = yaml.load(f.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return f.read_bytes()  # dbt says what is wrong with it
    return json.dumps(_without_descriptions(content), default=str).encode()


def _without_descriptions(node):
    # Only an entry that names something (a model, column, source, test, macro or argument)
    # has its description dropped: a key of that name elsewhere (in `meta`, say) may be data.
    # Mappings as sorted pairs of their keys' repr: YAML keys need not be text (`on:` is True).
    if isinstance(node, dict):
        named = "name" in node
        return sorted([repr(k), _without_descriptions(v)] for k, v in node.items()
                      if not (named and k == "description"))
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


def dbt_vars(methodology: Methodology) -> dict:
    """dbt's --vars: what stays the same from night to night (a change makes dbt parse
    the whole project again)."""
    return {"config_sha256": methodology.sha256, "methodology": methodology.values}


def dbt_env(year: int, as_of: dt.date) -> dict[str, str]:
    """The run's year and as-of date, which macros/run_period.sql reads from the
    environment when it compiles SQL: as --vars, a new as-of date every night would cost
    a full parse every night."""
    return {"PARITRANA_YEAR": str(year), "PARITRANA_AS_OF": as_of.isoformat()}


def _invoke(paths: Paths, args: list[str], env: dict[str, str], progress: Callable[[str], None] | None = None):
    from dbt.cli.main import dbtRunner

    home = paths.home.resolve()
    target = home / "dbt" / "target"
    logs = home / "dbt" / "logs"
    # A new home starts from the parse another home saved of the same project (4–6 s).
    seed_key = parse_cache.key(DBT_PROJECT_DIR, args[args.index("--vars") + 1] if "--vars" in args else "")
    parse_cache.seed(target, seed_key)

    def on_event(event) -> None:
        if progress and event.info.name in ("LogModelResult", "LogTestResult", "LogNodeResult"):
            progress("    " + event.info.msg)

    runner = dbtRunner(callbacks=[on_event] if progress else [])
    # dbt keeps its parsed project for the next run only while the profile renders the
    # same (its partial parsing hashes the connection, the path included): a warehouse
    # named relative to its home, with dbt run from there, lets a moved or copied home
    # skip the full parse (3–4 s a run).
    # dbt's import is done: its objects need no walking while it builds (heap.py).
    with heap.frozen():
        try:
            with (_noting_ctrl_c() as ctrl_c, contextlib.chdir(home),
                  environment({**env, "PARITRANA_WAREHOUSE": paths.warehouse.name})):
                res = runner.invoke(args + [
                    "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                    "--target-path", str(target), "--log-path", str(logs), "--quiet", "--no-use-colors",
                    "--no-send-anonymous-usage-stats",
                ])
        finally:
            _release_duckdb()  # its collection walks only what the build made
    if ctrl_c or isinstance(res.exception, KeyboardInterrupt):
        raise KeyboardInterrupt(f"interrupted during dbt {args[0]}") from res.exception
    if res.success:
        parse_cache.keep(target, seed_key)
    return res


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """`values` in the environment while a step runs (dbt's env_var() reads them; libpq
    reads $PGPASSWORD for PostgreSQL's gate), and the environment as it was afterwards: a
    process that builds twice, or runs other work after a build (the DAG's tasks under
    dag.test(), a notebook), must not find one build's year and as-of date in the next."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _noting_ctrl_c():
    """Notes a Ctrl-C during dbt, which dbt handles itself: it cancels its connections and
    hands the interrupt back, or, when a node's thread meets a cancelled connection first,
    only that node's "Connection already closed" error. Either way the run was
    interrupted, and must say so (exit 1 with the interrupt's message), not report a build
    failure. Signal handlers belong to the main thread; elsewhere dbt's own report stands."""
    noted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum, frame):
        if previous == signal.SIG_IGN:
            return
        noted.append(True)
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def _release_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB instance open in the process after an in-process run;
    the quality gate's connection (different client configuration) would then be refused,
    and the warehouse file would stay open. Close it explicitly."""
    import gc

    from dbt.adapters.duckdb.connections import DuckDBConnectionManager as manager

    with manager._LOCK:
        if manager._ENV is not None:
            try:
                manager._ENV.close()
            finally:
                manager._ENV = None
    gc.collect()


def _stop_if_machine(exception: BaseException | None, failed: list[NodeResult], doing: str) -> None:
    """A disk that filled or memory that ran out (dbt writing its target files, a node that
    DuckDB could not write or compute) is said as the machine's stop, with what to do, not
    as a failed build: the node and DuckDB's line that says why."""
    if exception is not None and machine_failure(exception):
        raise machine_stop(exception, doing) from exception
    for node in failed:
        said = next((line.strip() for line in (node.message or "").splitlines() if machine_text(line)), None)
        if said:
            raise machine_stop(RuntimeError(f"{node.resource_type} {node.name}: {said}"), doing)


def build(paths: Paths, year: int, as_of: dt.date, methodology: Methodology,
          progress: Callable[[str], None] = print, full_refresh: bool = False,
          select: str | None = None, unit_tests: bool = False) -> BuildResult:
    """`dbt build` of models and data tests (unit tests run in the test suite, not nightly)."""
    t0 = time.perf_counter()
    args = ["build", "--vars", json.dumps(dbt_vars(methodology))]
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    res = _invoke(paths, args, dbt_env(year, as_of), progress)
    result = BuildResult(time.perf_counter() - t0)
    for r in (res.result.results if res.result is not None else []):
        result.nodes.append(NodeResult(r.node.name, str(r.node.resource_type), str(r.status),
                                       float(r.execution_time or 0), r.message))
    if not res.success:
        if res.exception is not None and held_elsewhere(res.exception):
            raise held_elsewhere_stop(res.exception, paths)
        failed = [n for n in result.nodes if n.status in ("error", "fail", "runtime error")]
        detail = "; ".join(f"{n.resource_type} {n.name}: {n.status} ({n.message})" for n in failed[:10])
        _stop_if_machine(res.exception, failed, "dbt build")
        cause = detail or (str(res.exception) if res.exception else "see the dbt log")
        raise BuildFailed(f"dbt build failed: {cause}. Log: {paths.home / 'dbt' / 'logs' / 'dbt.log'}")
    return result


def generate_docs(paths: Paths, year: int, as_of: dt.date, methodology: Methodology) -> Path:
    """`dbt docs generate --static`: one self-contained HTML file that opens from disk.
    --no-compile: the build just wrote the manifest with every node's compiled SQL;
    compiling the project again would only repeat it."""
    res = _invoke(paths, ["docs", "generate", "--static", "--no-compile", "--vars", json.dumps(dbt_vars(methodology))],
                  dbt_env(year, as_of))
    if not res.success:
        _stop_if_machine(res.exception, [], "dbt docs generate")
        raise BuildFailed(f"dbt docs generate failed: {res.exception}")
    site = paths.home / "docs" / "dbt" / "index.html"
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = site.with_suffix(".tmp")
    shutil.copyfile(paths.home / "dbt" / "target" / "static_index.html", tmp)
    os.replace(tmp, site)
    return site
