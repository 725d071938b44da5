"""Running the expectation suites and deciding whether a run may publish.

Suites are read from expectations/*.yml (reviewable, with a severity per expectation),
turned into GX suites in a file data context under HOME/gx, and validated through GX's
SQL data source on the warehouse (or, for the dbt project's other target, on PostgreSQL:
`Target`, postgres_target.py): one checkpoint per set of identifying columns
(`identified_by`, which name a failed check's rows), then Data Docs once per run, which
keep the most recent gates (PARITRANA_DATA_DOCS_RUNS, default 30; older results move to
HOME/gx/archive); every run keeps HOME/reports/<run_id>/gate.json.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import queue
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ContextManager

import yaml

from .. import heap
from ..builds import current
from ..methodology import Methodology
from ..settings import Paths, count_setting
from ..warehouse import STORAGE_VERSION, connect, writing_to

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
SEVERITIES = ("blocking", "warning")
# GX's store keeps the validation results of this many most recent gates; older ones move
# to HOME/gx/archive. GX lists (and parses the date of) every stored result each time it
# builds Data Docs, so an unbounded store made every night's gate slower by the history
# (a year of nights: about 5 s more a gate). Every run keeps HOME/reports/<run_id>/gate.json.
KEEP_GATES_ENV = "PARITRANA_DATA_DOCS_RUNS"


@dataclass(frozen=True)
class Target:
    """Where the suites run: the warehouse's DuckDB file (`warehouse_target`), or the dbt
    project's PostgreSQL target (postgres_target.gate_target). The suites' SQL is the same
    on both; what differs is how GX and the gate's own aggregates connect."""
    name: str  # GX's data source is <name>_<suites>
    project: Path  # the GX project: its stores, Data Docs and archive
    connection_string: str  # holds no secret: GX writes it into the project's configuration
    engine_kwargs: dict
    statements: Callable[[], ContextManager[Callable[[str], object]]]  # runs the aggregates' SQL
    prepare: Callable[[], None]  # once GX is imported
    release: Callable[[], None]  # closes what GX left open
    # The aggregates' connections. DuckDB runs each query on every core already; PostgreSQL
    # ran the largest without parallel workers, so two connections run two at once.
    connections: int = 1


def warehouse_target(paths: Paths) -> Target:
    @contextlib.contextmanager
    def statements() -> Iterator[Callable[[str], object]]:
        with connect(paths) as con:
            yield con.execute

    def prepare() -> None:
        from . import gx_duckdb

        gx_duckdb.apply()

    def release() -> None:
        from . import gx_duckdb

        gx_duckdb.release_connections()

    # Same configuration as every other connection of the process (dbt's stays open):
    # DuckDB refuses a second connection to one file with a different configuration.
    return Target("warehouse", paths.home / "gx", f"duckdb:///{paths.warehouse}",
                  {"connect_args": {"config": {"storage_compatibility_version": STORAGE_VERSION}}},
                  statements, prepare, release)


class GxProjectDamaged(OSError):
    """HOME/gx, which the gate writes for itself, cannot be read (an edit gone wrong)."""


def _context(gx, project: Path):
    """The gate's GX project (HOME/gx; HOME/gx/postgres on PostgreSQL), made on first use,
    with the gate's settings (`gx`: the module as the gate imported it, gx_import.load)."""
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.exceptions import GreatExpectationsError

    def open_project():
        try:
            return gx.get_context(mode="file", project_root_dir=str(project))
        except GreatExpectationsError as e:
            config = project / "gx" / "great_expectations.yml"
            reason = " ".join(str(e).split())[:300]
            raise GxProjectDamaged(f"the Great Expectations project under {project} cannot be read "
                                   f"({reason}). The gate makes it itself: move {config} aside and run again, "
                                   "and it is made anew (the gates' results stay, in HOME/reports and GX's "
                                   "store)") from e

    context = open_project()
    settings = context.variables
    bars = settings.progress_bars
    bars_on = (bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)) is not False
    # GX re-reads and re-parses its configuration-variables file (a project's secrets) each
    # time it reads one of its own settings, about 600 times a gate: half a second. The
    # gate's project has no secret to keep (its only connection is the warehouse's path),
    # so it names no such file.
    variables_file = settings.config_variables_file_path
    if bars_on or variables_file:
        settings.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
        settings.config_variables_file_path = None
        settings.save()
    # GX reads the file's name when it opens a project: reopened, so that this gate already
    # reads none.
    return open_project() if variables_file else context


class GateFailed(RuntimeError):
    """Blocking checks failed: nothing is published. Carries the gate result."""

    def __init__(self, gate: "GateResult"):
        self.gate = gate
        super().__init__(gate.failure_message())


# What a publication records of each check (its metadata's quality_checks).
PUBLISHED_FIELDS = ("name", "severity", "passed", "observed", "threshold")


@dataclass
class CheckResult:
    name: str
    suite: str
    asset: str
    expectation: str
    column: str | None
    severity: str
    passed: bool
    observed: object
    threshold: dict
    error: str | None = None

    def published(self) -> dict:
        return {k: getattr(self, k) for k in PUBLISHED_FIELDS}


@dataclass
class GateResult:
    run_id: str
    checks: list[CheckResult] = field(default_factory=list)
    data_docs: str | None = None
    report: str | None = None
    seconds: dict = field(default_factory=dict)
    build: dict | None = None  # the stamp of the build validated (paritrana.builds)

    @property
    def blocking_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "blocking"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.blocking_failures

    def warning_lines(self) -> list[str]:
        return [warning_line(asdict(c)) for c in self.warnings]

    def failure_message(self, outcome: str = "nothing was published") -> str:
        lines = [f"quality gate failed: {len(self.blocking_failures)} blocking check(s); {outcome}"]
        lines += ["  " + failed_check_line(asdict(c)) for c in self.blocking_failures]
        lines.append(f"  report: {self.data_docs or self.report}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "passed": self.passed, "data_docs": self.data_docs,
                "seconds": self.seconds, "build": self.build, "checks": [asdict(c) for c in self.checks]}


def load_suites(directory: Path = EXPECTATIONS_DIR) -> list[dict]:
    suites = []
    for path in sorted(directory.glob("*.yml")):
        spec = yaml.safe_load(path.read_text())
        for asset, body in spec["assets"].items():
            for e in body["expectations"]:
                if e.get("severity") not in SEVERITIES:
                    raise ValueError(f"{path}: {asset} {e.get('type')}: severity must be one of {SEVERITIES}")
            named = body.get("identified_by", [])
            if not (isinstance(named, list) and all(isinstance(c, str) and c for c in named)):
                raise ValueError(f"{path}: {asset}: identified_by must be a list of column names")
        spec["path"] = str(path)
        suites.append(spec)
    return suites


def _substitute(value, params: dict):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in params:
        return params[value[1:-1]]
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    return value


def _expectation(gx, spec: dict, params: dict):
    kwargs = {k: _substitute(v, params) for k, v in spec.items() if k not in ("type", "severity")}
    cls = getattr(gx.expectations, "".join(part.title() for part in spec["type"].split("_")))
    return cls(**kwargs, meta={"severity": spec["severity"]})


ROWS_SHOWN = 5


def _observed(result) -> object:
    r = result.result or {}
    if "observed_value" in r:
        return r["observed_value"]
    if "unexpected_count" in r:
        observed = {"unexpected_count": r.get("unexpected_count"), "unexpected_percent": r.get("unexpected_percent"),
                    "element_count": r.get("element_count"),
                    "sample": (r.get("partial_unexpected_list") or [])[:ROWS_SHOWN]}
        if r.get("partial_unexpected_index_list"):  # the asset is `identified_by` some columns
            observed["rows"] = r["partial_unexpected_index_list"][:ROWS_SHOWN]
        return observed
    return None


COMPUTED_SCHEMA = "_gate"


def _timed(work: Callable, *args) -> tuple[object, float]:
    t0 = time.perf_counter()
    return work(*args), round(time.perf_counter() - t0, 2)


def _compute_once(target: Target, suites: list[dict], seconds: dict[str, float]) -> dict[str, str]:
    """Assets marked `compute_once` (aggregates over the large tables) run their query once
    into a table of schema _gate, which GX then reads: GX runs an asset's query once per
    metric, and a query over 45 M rows several times over is most of a gate's time.
    Returns the query GX should use instead, per asset key; fills `seconds` per asset."""
    wanted = [(s["suite"], name, body) for s in suites for name, body in s["assets"].items()
              if body.get("compute_once")]
    if not wanted:
        return {}
    replaced = {}
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for asset in wanted:
        pending.put(asset)

    def compute(execute: Callable[[str], object]) -> None:
        while True:
            try:
                suite, name, body = pending.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            table = f"{COMPUTED_SCHEMA}.{suite}__{name}"
            execute(f"drop table if exists {table}")
            execute(f"create table {table} as {body['query']}")
            replaced[f"{suite}.{name}"] = f"select * from {table}"
            seconds[f"{suite}.{name}"] = round(time.perf_counter() - t0, 2)

    def on_another_connection() -> None:
        with target.statements() as execute:
            compute(execute)

    with target.statements() as execute:
        execute(f"create schema if not exists {COMPUTED_SCHEMA}")
        with ThreadPoolExecutor(max_workers=max(target.connections - 1, 1)) as others:
            helping = [others.submit(on_another_connection) for _ in range(target.connections - 1)]
            compute(execute)
            for helper in helping:
                helper.result()
    return replaced


def keep_gates() -> int:
    return count_setting(KEEP_GATES_ENV, "30", "gates")


MAX_DAYS_BEHIND_ENV = "PARITRANA_MAX_DAYS_BEHIND"


def max_days_behind() -> int:
    """How many days a daily extract's latest business date may lie before the as-of date
    before the gate warns (marts.delivery_freshness): its file for D comes after the night
    that computes D, so 1 is usual, and 2 lets one delivery be late."""
    return count_setting(MAX_DAYS_BEHIND_ENV, "2", "days", minimum=0)


def archive_old_results(project: Path, keep: int) -> int:
    """Move the stored validation results of all but the `keep` most recent gates from GX's
    store (project/gx/uncommitted/validations) to project/archive/validations, at the same
    relative paths; returns how many files moved. GX files a result under
    <suite>/<run name>/<run time>/<batch>.json, and one gate's results share a run time."""
    store = project / "gx" / "uncommitted" / "validations"
    results = list(store.rglob("*.json"))
    recent = set(sorted({r.parent.name for r in results}, reverse=True)[:keep])
    moved = 0
    for result in results:
        if result.parent.name in recent:
            continue
        target = project / "archive" / "validations" / result.relative_to(store)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(result, target)
        moved += 1
        folder = result.parent
        while folder != store:  # GX walks every folder of its store: none left empty
            try:
                folder.rmdir()
            except OSError:  # not empty: another result is still there
                break
            folder = folder.parent
    return moved


def _drop_computed(target: Target) -> None:
    with target.statements() as execute:
        execute(f"drop schema if exists {COMPUTED_SCHEMA} cascade")


def _validate_with_gx(gx, target: Target, run_id: str, methodology: Methodology, suites: list[dict],
                      computed: dict[str, str], keep: int, validated: dict | None) -> tuple["GateResult", float]:
    """The suites as GX validations, their results as checks, and Data Docs; returns the
    gate and when validation started."""
    params = {"config_sha256": methodology.sha256,
              "referential_gate": float(methodology.values["referential_gate"]),
              "max_days_behind": max_days_behind()}
    # One datasource (and its checkpoints) per set of suites: a stored checkpoint must only
    # reference assets its datasource still has.
    selection = "_".join(s["suite"] for s in suites)
    context = _context(gx, target.project)
    # suite.asset: (suite, asset, its body in expectations/*.yml)
    assets = {f"{spec['suite']}.{name}": (spec["suite"], name, body)
              for spec in suites for name, body in spec["assets"].items()}
    queries = {}
    for key, (_, _, body) in assets.items():
        query = computed.get(key) or " ".join(body["query"].split())
        if not query.lower().startswith("select "):
            query = f"select * from ({query}) as checked"  # GX accepts only SELECT queries
        queries[key] = query
    # The assets and their whole-table batch definitions come with the datasource, in the
    # form GX stores them: GX rewrites its whole configuration file on each asset and batch
    # definition added one by one (35 times a gate, half a second).
    datasource = context.data_sources.add_or_update_sql(
        f"{target.name}_{selection}", connection_string=target.connection_string, kwargs=target.engine_kwargs,
        assets=[{"type": "query", "name": key, "query": query, "batch_definitions": [{"name": "all"}]}
                for key, query in queries.items()])
    # GX names the failing rows by the columns a checkpoint's result format lists, so the
    # assets that have identifying columns (a file, an entity, a total) are validated by a
    # checkpoint of their own per set of columns.
    validations: dict[tuple[str, ...], list] = {}
    for key, (_, _, body) in assets.items():
        batch = datasource.get_asset(key).get_batch_definition("all")
        suite = context.suites.add_or_update(gx.ExpectationSuite(
            name=key, expectations=[_expectation(gx, e, params) for e in body["expectations"]]))
        validations.setdefault(tuple(body.get("identified_by", [])), []).append(
            context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=f"{selection}:{key}", data=batch, suite=suite)))
    started = time.perf_counter()
    # GX tries to read a run name as a timestamp and fails on ids like "…Z-9999" (an
    # out-of-range UTC offset): the prefix makes it plainly not a date.
    gx_run = gx.RunIdentifier(run_name=f"paritrana_{run_id}", run_time=dt.datetime.now(dt.timezone.utc))
    run_results = {}
    for columns, definitions in validations.items():
        result_format = {"result_format": "SUMMARY", "partial_unexpected_count": ROWS_SHOWN}
        if columns:
            result_format["unexpected_index_column_names"] = list(columns)
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"paritrana_gate_{selection}" + "".join(f"__{c}" for c in columns),
            validation_definitions=definitions, actions=[], result_format=result_format))
        run_results.update(checkpoint.run(run_id=gx_run).run_results)
    gate = GateResult(run_id, build=validated)
    for identifier, validation in run_results.items():
        suite_name, asset_name, _ = assets[validation.suite_name]
        for r in validation.results:
            config = r.expectation_config
            kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}
            error = None
            if r.exception_info and r.exception_info.get("raised_exception"):
                error = str(r.exception_info.get("exception_message"))[:300]
            column = config.kwargs.get("column")
            gate.checks.append(CheckResult(
                name=f"{suite_name}.{asset_name}.{config.type}" + (f"({column})" if column else ""),
                suite=suite_name, asset=asset_name, expectation=config.type, column=column,
                severity=(config.meta or {}).get("severity", "blocking"), passed=bool(r.success),
                observed=_observed(r), threshold=kwargs, error=error))
    _named_rows_for_data_docs(context, run_results)
    # Data Docs once for the whole gate: GX's UpdateDataDocsAction rebuilds the site (and
    # its index of every kept run) after each of the assets, half the gate's time.
    archive_old_results(target.project, keep)
    context.build_data_docs(resource_identifiers=list(run_results.keys()))
    urls = context.get_docs_sites_urls()
    gate.data_docs = _clickable(urls[0]["site_url"]) if urls else None
    return gate, started


def _named_rows_for_data_docs(context, run_results: dict) -> None:
    """GX's Data Docs show a failed check's rows by their identifying columns only from
    `unexpected_index_list`, which GX fills for result format COMPLETE: every failing row,
    however many. The gate asks for SUMMARY, whose first rows (ROWS_SHOWN) GX keeps as
    `partial_unexpected_index_list` and does not show. Stored again with those rows as the
    list, a failed check's page names them as the run's message does (headed "Sampled
    Unexpected Values" when more rows failed)."""
    for identifier, validation in run_results.items():
        named = [r.result for r in validation.results
                 if (r.result or {}).get("partial_unexpected_index_list") and "unexpected_index_list" not in r.result]
        for result in named:
            result["unexpected_index_list"] = result["partial_unexpected_index_list"]
        if named:
            context.validation_results_store.set(identifier, validation)


def validate(paths: Paths, run_id: str, methodology: Methodology, suite_names: list[str] | None = None) -> GateResult:
    """Run the suites (all, or those named) and write the run's report. Does not raise on
    failure: the caller decides (pipeline raises GateFailed when blocking checks fail)."""
    keep = keep_gates()  # a bad setting is refused before any work
    suites = [s for s in load_suites() if suite_names is None or s["suite"] in suite_names]
    # the build this gate checks, so that only that one is published
    return run_gate(warehouse_target(paths), paths, run_id, methodology, suites, keep, validated=current(paths))


def run_gate(target: Target, paths: Paths, run_id: str, methodology: Methodology, suites: list[dict], keep: int,
             validated: dict | None) -> GateResult:
    """The suites on `target`; the report goes to HOME/reports/<run_id>/gate.json."""
    t0 = time.perf_counter()
    # An earlier attempt's report would pass for this one's if this one stops before writing its own.
    report_path(paths, run_id).unlink(missing_ok=True)
    # The aggregates run in the database (DuckDB releases the GIL, as psycopg2 does while it
    # waits) while Python imports GX, a few seconds of single-core work; they finish before
    # GX connects: on DuckDB its connections carry a configuration of their own
    # (duckdb_engine's), and DuckDB refuses a differently configured second connection in
    # the same process.
    compute_seconds: dict[str, float] = {}
    # Leave what the process already holds (dbt's objects, in a whole run) out of the
    # collections that GX's import starts, and GX's own out of those of its validation
    # (heap.py). The connections to release are among what the validation makes.
    with heap.frozen():
        with ThreadPoolExecutor(max_workers=1) as pool:
            computing = pool.submit(_timed, _compute_once, target, suites, compute_seconds)
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
            logging.getLogger("great_expectations").setLevel(logging.ERROR)
            from .gx_import import load

            gx = load()
            target.prepare()
            imported = time.perf_counter()
            computed, compute_wall = computing.result()
        computed_by = time.perf_counter()
        with heap.frozen():
            try:
                with writing_to(f"the quality gate's results and Data Docs under {target.project}"):
                    gate, started = _validate_with_gx(gx, target, run_id, methodology, suites, computed, keep,
                                                      validated)
            finally:
                # Also when GX raises: the aggregates belong to this gate only and must not
                # stay in the warehouse (or PostgreSQL).
                target.release()
                _drop_computed(target)
    # compute_once is its wall time: with two connections the assets' own times overlap
    gate.seconds = {"import": round(imported - t0, 2), "compute_once": compute_wall,
                    "import_and_compute_once": round(computed_by - t0, 2),
                    "compute_once_by_asset": compute_seconds,
                    "validate": round(time.perf_counter() - started, 2), "total": round(time.perf_counter() - t0, 2)}
    report = report_path(paths, run_id)
    report.parent.mkdir(parents=True, exist_ok=True)
    with writing_to(str(report)):
        report.write_text(json.dumps(gate.to_json(), indent=1, default=str) + "\n")
    gate.report = str(report)
    return gate


def report_path(paths: Paths, run_id: str) -> Path:
    return paths.home / "reports" / run_id / "gate.json"


def failed_rows(check: dict) -> str:
    """` on file_name=claims__2025-01-03.csv (quarantined_share 1.0)`: the rows that failed, by
    the asset's identifying columns (those without a value left out), when it has them;
    empty otherwise."""
    observed = check.get("observed")
    rows = observed.get("rows") if isinstance(observed, dict) else None
    if not rows:
        return ""
    column = check.get("column")
    shown = "; ".join(" ".join(f"{k}={v}" for k, v in row.items() if k != column and v is not None)
                      + (f" ({column} {row[column]!r})" if column in row else "") for row in rows)
    more = (observed.get("unexpected_count") or len(rows)) - len(rows)
    return f" on {shown}" + (f" and {more:,} more" if more > 0 else "")


def observed_text(check: dict) -> str:
    """The observed value without the rows that `failed_rows` names."""
    observed = check.get("observed")
    if isinstance(observed, dict) and "rows" in observed:
        observed = {k: v for k, v in observed.items() if k != "rows"}
    return repr(observed)


def warning_line(check: dict) -> str:
    """A failed check of severity warning, as the run's and the DAG's summaries say it."""
    return f"warning {check['name']}{failed_rows(check)}: observed {observed_text(check)}"


def failed_check_line(check: dict) -> str:
    """One failed check, as the gate's message and the DAG's summary (from gate.json) say it."""
    return (f"FAILED {check['name']}{failed_rows(check)}: observed {observed_text(check)}, "
            f"expected {check['threshold']}" + (f" (error: {check['error']})" if check.get("error") else ""))


def _clickable(url: str) -> str:
    """GX writes a local site's address as file:// plus the bare path; a space or an
    apostrophe in HOME would end the link where a terminal or a log viewer sees it."""
    return Path(url.removeprefix("file://")).as_uri() if url.startswith("file:///") else url
