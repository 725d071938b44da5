"""Which build of the marts a gate validated, so that only that build is published.

In Airflow each task takes the warehouse in turn, and any task can be cleared and run
again on its own. Clearing `publish` of an earlier night after a later night's build
published the later marts under the earlier run's id and as-of date (the manifest said
one date, the files another); after a later build that failed its gate, or stopped
midway, it would publish marts that no gate passed. So every build records a stamp in
raw.warehouse_settings, as building when it starts and as built when dbt succeeds; the
gate records the stamp it validated; and a publication requires that stamp to be the
warehouse's current one, finished, for the same year, as-of date and configuration,
with no file loaded since. Every dbt run forgets the stamp as it starts (an on-run-start
hook, `forget_build_stamp`), so a build by hand between the gate and the publication, or
one that fails, leaves no stamp that a publication would take for its gate's.

Every build also records the dbt models that compute it (`transform.models_fingerprint`), in
its stamp and, once finished, as `built_by_models`.
The incremental models recompute only the keys that loads touched, so after an upgrade that
changed a model the other rows would stay as the old model computed them, and a warehouse
would hold numbers that a new one, built from the same deliveries, would not: the first
build by other models is a full refresh (`rebuild_reason`).
"""
from __future__ import annotations

import datetime as dt
import json
import secrets

from ingestion.raw_schema import RAW

from . import code_version
from .methodology import Methodology
from .settings import Paths
from .warehouse import connect

STAMP = "last_build"
MODELS = "built_by_models"
# Why a build is made full (rebuild_reason here, and postgres_target's on PostgreSQL).
UNRECORDED_MODELS = "its last build was by a version before 0.3.14, which does not record its dbt models"


def models_changed(by: str | None) -> str:
    return f"its dbt models changed since its last build (by {by or 'unrecorded'}; now {code_version()})"


def rebuilt_line(reason: str) -> str:
    """The summaries' line for a build made full by `rebuild_reason`."""
    return f"rebuilt in full (incremental models too): {reason}"


class StaleBuild(RuntimeError):
    """The warehouse no longer holds the build that this run's gate validated."""


def _loads(con) -> int:
    """The last load that changed the raw tables (a rejected or skipped file changes none)."""
    return con.execute(f"select coalesce(max(load_id), 0) from {RAW}.load_ledger "
                       "where status in ('LOADED', 'SUPERSEDED')").fetchone()[0]


def _write(con, stamp: dict) -> None:
    con.execute(f"insert or replace into {RAW}.warehouse_settings values (?, ?)", [STAMP, json.dumps(stamp)])


def begin(paths: Paths, year: int, as_of: dt.date, methodology: Methodology, models: str | None = None) -> dict:
    """Before dbt writes anything: from here until `finish`, no gate's stamp is current.
    `models`: the fingerprint of the dbt models about to build (transform.models_fingerprint)."""
    from .transform import models_fingerprint

    with connect(paths) as con:
        stamp = {"id": secrets.token_hex(8), "state": "building", "year": year, "as_of": as_of.isoformat(),
                 "config_sha256": methodology.sha256, "loads": _loads(con),
                 "models": models or models_fingerprint(), "code_version": code_version()}
        _write(con, stamp)
    return stamp


def finish(paths: Paths, stamp: dict) -> dict:
    """The build succeeded: its models computed every row the warehouse now holds."""
    built = {**stamp, "state": "built"}
    with connect(paths) as con:
        _write(con, built)
        con.execute(f"insert or replace into {RAW}.warehouse_settings values (?, ?)",
                    [MODELS, json.dumps({k: stamp[k] for k in ("models", "code_version")})])
    return built


def _setting(con, name: str) -> dict | None:
    row = con.execute(f"select value from {RAW}.warehouse_settings where name = ?", [name]).fetchone()
    return json.loads(row[0]) if row else None


def last_stamp(con) -> dict | None:
    """The stamp of the last build begun and not forgotten (see the module's text)."""
    return _setting(con, STAMP)


def rebuild_reason(con, models: str) -> str | None:
    """Why a build by `models` must rebuild the incremental models in full, or None: the last
    finished build, or a build begun since, was by other dbt models, or by a version that
    records none (before 0.3.14; such a version keeps the stamp, without its models, when it
    builds after a later one: a rollback). A warehouse dbt never built needs no reason."""
    stamp, built_by = _setting(con, STAMP), _setting(con, MODELS)
    if built_by is None or (stamp is not None and "models" not in stamp):
        never_built = built_by is None and not con.execute(
            "select count(*) from information_schema.tables where table_schema = 'intermediate' "
            "and table_name = 'incremental_watermarks'").fetchone()[0]
        return None if never_built else UNRECORDED_MODELS
    for record in (built_by, stamp):
        if record is not None and record["models"] != models:
            return models_changed(record["code_version"])
    return None


def current(paths: Paths) -> dict | None:
    """The stamp of the build the marts hold, with the loads as they are now."""
    with connect(paths, read_only=True) as con:
        row = con.execute(f"select value from {RAW}.warehouse_settings where name = ?", [STAMP]).fetchone()
        return {**json.loads(row[0]), "loads_now": _loads(con)} if row else None


def require_validated(paths: Paths, run_id: str, validated: dict | None, year: int, as_of: dt.date,
                      methodology: Methodology) -> None:
    """Raises StaleBuild unless the marts are the finished build that run_id's gate
    validated, for this year, as-of date and configuration, with nothing loaded since."""
    now = current(paths)
    expected = {"year": year, "as_of": as_of.isoformat(), "config_sha256": methodology.sha256}
    if validated is None:
        why = "its gate recorded no build (a gate before 0.3.5, or none)"
    elif now is None or now["id"] != validated["id"]:
        why = f"its gate validated build {validated['id']}, and the warehouse now holds " + (
            f"build {now['id']} ({now['state']}, year {now['year']}, as of {now['as_of']})" if now else
            "no finished build: dbt has run on it since (by hand, or a build that failed)")
    elif now["state"] != "built":
        why = f"build {now['id']} did not finish"
    elif any(now[k] != v for k, v in expected.items()):
        why = (f"its build was for year {now['year']} as of {now['as_of']} (configuration "
               f"{now['config_sha256'][:12]}), not year {year} as of {as_of} ({methodology.sha256[:12]})")
    elif now["loads_now"] != now["loads"]:
        why = "files were loaded since its build"
    else:
        return
    raise StaleBuild(f"run {run_id} cannot publish: {why}. Nothing was published, and the latest stays; run the "
                     "night again from its build (in Airflow, clear dbt_build with its downstream tasks; "
                     "or paritrana run)")
