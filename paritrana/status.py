"""`paritrana status`: what a home holds and what its next build will do, read without
taking the warehouse (a run may be writing it): the last build and the version that made
it, whether the next build is incremental or full and why, the latest publication of
each year, which build the analysts' copy holds, the run turn, and how current each daily
extract is."""
from __future__ import annotations

import re

from . import airflow_runs, builds, run_turns
from .publication import read_manifest
from .settings import Paths
from .warehouse import WarehouseBusy, connect, first_line, held_elsewhere, lock_holder


def _warehouse_lines(paths: Paths) -> tuple[list[str], dict | None]:
    """The warehouse's lines, and the stamp of its last build (None when unread)."""
    from .transform import models_fingerprint

    if not paths.warehouse.exists():
        return [f"warehouse: none yet at {paths.warehouse}: the first run builds it"], None
    try:
        with connect(paths, read_only=True) as con:
            stamp = builds.last_stamp(con)
            rebuild = builds.rebuild_reason(con, models_fingerprint())
            fresh = con.execute(
                "select extract, last_business_date, days_behind, as_of from marts.delivery_freshness order by 1"
            ).fetchall() if con.execute("select count(*) from information_schema.tables where table_schema = "
                                        "'marts' and table_name = 'delivery_freshness'").fetchone()[0] else []
    except WarehouseBusy as busy:  # its text is a writer's; this command only waited to read
        holder = re.search(r"\(([^()]*, PID \d+)\)", str(busy))
        return [f"warehouse: {paths.warehouse} is open in another process"
                + (f" ({holder.group(1)})" if holder else "")
                + ": a run writing it, or a session that opened it for writing; ask again when it has closed"], None
    size = paths.warehouse.stat().st_size / 2**20
    lines = [f"warehouse: {paths.warehouse} ({size:,.1f} MiB)"]
    if stamp is None:
        lines.append("last build: none finished (never built, or the last dbt run failed or was stopped)")
    else:
        lines.append(f"last build: {stamp['id']} {stamp['state']}, year {stamp['year']} as of {stamp['as_of']}, "
                     f"by {stamp.get('code_version', 'a version before 0.3.14')} "
                     f"(configuration sha256 {stamp['config_sha256'][:12]}…)")
    lines.append("next build: " + (f"in full, incremental models too: {rebuild}" if rebuild else "incremental"))
    if fresh:
        lines.append(f"daily extracts, as of the last build's date {fresh[0][3]}: " + "; ".join(
            f"{extract} {_behind(last, behind)}" for extract, last, behind, _ in fresh))
    return lines, stamp


def _analysts_line(paths: Paths, warehouse_build: dict | None) -> str:
    """Which build analysts read: the warehouse's last, or an earlier one (the runs since
    published none that became the latest)."""
    import duckdb

    copy = paths.reader_copy
    if not copy.exists():
        return f"analysts' copy: none yet at {copy}: the first publication writes it"
    try:
        with duckdb.connect(str(copy), read_only=True) as con:
            stamp = builds.last_stamp(con)
    except duckdb.Error as e:
        if not held_elsewhere(e):  # not a DuckDB file, or damaged: said as it is
            return f"analysts' copy: {copy} could not be read: {first_line(e)}"
        holder = lock_holder(e)
        return (f"analysts' copy: {copy} is open for writing in another process"
                + (f" ({holder})" if holder else "") + ": a session that opened it without -readonly")
    if stamp is None:
        return f"analysts' copy: {copy} holds a build that recorded no stamp"
    held = f"build {stamp['id']}, year {stamp['year']} as of {stamp['as_of']}"
    if warehouse_build is None or warehouse_build["id"] == stamp["id"]:
        return f"analysts' copy: {copy} holds {held}" + (", the warehouse's last" if warehouse_build else "")
    return (f"analysts' copy: {copy} holds {held}, not the warehouse's last ({warehouse_build['id']}): "
            "the runs since published none that became the latest")


def _behind(last, days: int | None) -> str:
    if last is None:
        return "never delivered"
    if days > 0:
        return f"to {last}, {days} day{'s' * (days > 1)} behind"
    return f"to {last}" + (", current" if days == 0 else " (after the as-of date)")


def _publication_lines(paths: Paths) -> list[str]:
    published = paths.home / "published"
    years = sorted((d for d in published.iterdir() if d.name.isdigit() and (d / "latest").exists()),
                   key=lambda d: int(d.name)) if published.is_dir() else []
    if not years:
        return ["published: nothing yet"]
    lines = ["published (latest of each year):"]
    for year in years:
        m = read_manifest((year / "latest").resolve())
        lines.append(f"  {year.name}: {m['run_id']}, as of {m['as_of']}, made {m['created_at']} by "
                     f"{m.get('code_version', 'an unrecorded version')}")
    return lines


def _turn_line(paths: Paths) -> str:
    holder = run_turns.holder(paths)
    waiting = run_turns.waiting(paths)
    if holder is None:
        return "run turn: free" + (f"; {len(waiting)} waiting" if waiting else "")
    answer = airflow_runs.state_of(paths, holder)  # a few seconds, and only while the turn is held
    return (f"run turn: held by {holder.dag_id} run {holder.run_id} (started {holder.started})"
            + (f"; {len(waiting)} waiting" if waiting else "") + f"; {answer.said}"
            + (": it ended without giving the turn back, and the next `paritrana run` releases it"
               if answer.ended else ""))


def status(paths: Paths) -> str:
    warehouse, last_build = _warehouse_lines(paths)
    return "\n".join([f"home: {paths.home}", *warehouse, *_publication_lines(paths),
                      _analysts_line(paths, last_build), _turn_line(paths)])
