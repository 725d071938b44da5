"""Publication (outputs.md §2): the four rankings as CSV and Parquet plus a manifest, in a
run folder that becomes `latest` atomically, and only when complete.

Beside them, basis/ keeps the indicator marts the rankings come from, so that a publication
can be explained number by number after the warehouse has moved on.

Files are written into HOME/published/<year>/.<run_id>.partial, fsynced, the manifest
last; the folder is then renamed to <run_id> and the `latest` symlink replaced with one
rename. A crash at any point leaves the previous `latest` untouched and readable; a
leftover .partial folder is ignored by readers and removed by the next publication.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.rules import sql_str

from . import code_version
from .methodology import Methodology
from .settings import Paths, choice_setting, count_setting
from .warehouse import connect

RANKINGS = ("pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk")
# The indicator marts behind the rankings, with what each value was computed from (its
# numerator and denominator), kept in each publication's basis/ folder: the warehouse
# moves on every night, and an evaluator may have to explain an announced ranking months
# later (`paritrana explain --run`).
BASIS = "basis"
BASIS_MARTS = ("pemda_indicators", "badan_usaha_indicators", "umk_indicators")
# Published rounding (methodology §2): values to 6 decimals, scores to 4.
VALUE_TYPE, SCORE_TYPE = "decimal(24, 6)", "decimal(10, 4)"
# A test hook: pause (seconds) after the first file, so a test can kill a publication midway.
PAUSE_ENV = "PARITRANA_TEST_PUBLISH_PAUSE"
# How many publications of a year keep their files; unset (or "all"): every one, as
# outputs.md §2 describes. Older ones keep their manifest (which records each removed
# file's row count and sha256), so what was published stays on record.
KEEP_PUBLICATIONS_ENV = "PARITRANA_KEEP_PUBLICATIONS"
PRUNED = "pruned.json"
# Which publication `latest` names. "run" (the default, outputs.md §2): every publication
# becomes the latest, so a backfill of June nights after the final run of the year leaves
# `latest` naming a June ranking. "as-of": a publication becomes the latest only when its
# as-of date is not before the current latest's; an older one is published beside it.
LATEST_ENV = "PARITRANA_LATEST"
LATEST_POLICIES = ("run", "as-of")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatestPlan:
    """Whether a publication as of `as_of` becomes the latest of its year, and the latest
    it replaces or leaves in place (None the first time)."""
    as_of: dt.date
    becomes_latest: bool
    current_run: str | None = None
    current_as_of: dt.date | None = None

    @property
    def goes_back(self) -> bool:
        """The current latest is as of a later date than this publication."""
        return self.current_as_of is not None and self.as_of < self.current_as_of

    def note(self) -> str | None:
        """What a data engineer must be told about `latest`, when it is not the usual step forward."""
        if not self.goes_back:
            return None
        current = f"run {self.current_run}, as of {self.current_as_of}"
        if self.becomes_latest:
            return (f"note: latest now names this run, as of {self.as_of}; it named {current}, a later date "
                    f"(a backfill?). Every publication becomes the latest (outputs.md §2); "
                    f"{LATEST_ENV}=as-of keeps latest at the latest as-of date")
        return (f"note: not made the latest ({LATEST_ENV}=as-of): latest stays {current}, a later date than "
                f"this run's {self.as_of}; this publication is complete in its folder, and the analysts' copy "
                "stays with the latest")


@dataclass
class Publication:
    folder: Path
    latest: Path
    manifest: dict
    plan: LatestPlan | None = None
    reader_copies: list = field(default_factory=list)  # readers.CopyOutcome, set by the run
    analysts_line: str | None = None  # the summaries' line for them (readers.served_line), set by the run


def _rounded_select(con, ranking: str) -> str:
    columns = [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'marts' "
        "and table_name = ? order by ordinal_position", [f"rankings_{ranking}"]).fetchall()]
    exprs = []
    for c in columns:
        if c.endswith("_value"):
            exprs.append(f"cast(round({c}, 6) as {VALUE_TYPE}) as {c}")
        elif c.endswith("_score"):
            exprs.append(f"cast(round({c}, 4) as {SCORE_TYPE}) as {c}")
        else:
            exprs.append(c)
    return f"select {', '.join(exprs)} from marts.rankings_{ranking}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def inputs_used(con) -> list[dict]:
    rows = con.execute(
        "select file_name, extract, business_date, data_sha256, rows_in_file, rows_loaded, rows_quarantined, "
        "rows_duplicate, load_id from raw.load_ledger where status = 'LOADED' order by extract, business_date, load_id"
    ).fetchall()
    keys = ("file_name", "extract", "business_date", "sha256", "rows_in_file", "rows_loaded", "rows_quarantined",
            "rows_duplicate", "load_id")
    return [dict(zip(keys, (v.isoformat() if isinstance(v, dt.date) else v for v in r))) for r in rows]


def latest_policy() -> str:
    """$PARITRANA_LATEST: "run" (the default) or "as-of"; see LATEST_ENV."""
    return choice_setting(LATEST_ENV, LATEST_POLICIES)


def require_latest_link(paths: Paths, year: int) -> None:
    """`latest` must be a symbolic link (or absent) for a publication to replace it in one
    rename. A copy of HOME that followed links (cp -L, rsync -L, some backups) makes it a
    folder, and the publication failed at its last step, with 'Is a directory'."""
    link = paths.home / "published" / str(year) / "latest"
    if not link.exists() or link.is_symlink():
        return
    manifest = link / "manifest.json"
    holds = json.loads(manifest.read_text()).get("run_id") if manifest.is_file() else None
    kept = holds and (link.parent / holds / "manifest.json").is_file()
    what = f"; it holds a copy of publication {holds}" if holds else ""
    if holds and not kept:
        todo = f"{link.parent / holds} is missing: rename the folder to that and run again"
    else:
        todo = (f"{link.parent / holds} holds the same: move" if holds else "Move") + " the folder out of the way " \
            "and run again"
    raise ValueError(f"{link} is a folder, not a link (a copy of HOME that followed links?){what}. {todo}; the "
                     "next publication makes `latest` a link again")


def plan_latest(paths: Paths, year: int, as_of: dt.date) -> LatestPlan:
    """Whether a publication of `year` as of `as_of` will become the latest, under the
    policy. Asked under the warehouse lock, so nothing moves `latest` meanwhile."""
    policy = latest_policy()
    require_latest_link(paths, year)
    current = latest(paths, year)
    manifest = current / "manifest.json" if current else None
    if manifest is None or not manifest.is_file():
        return LatestPlan(as_of, True)
    current_as_of = dt.date.fromisoformat(json.loads(manifest.read_text())["as_of"])
    becomes = policy == "run" or as_of >= current_as_of
    return LatestPlan(as_of, becomes, current.name, current_as_of)


def publish(paths: Paths, run_id: str, year: int, as_of: dt.date, methodology: Methodology,
            checks: list[dict], plan: LatestPlan | None = None) -> Publication:
    keep = keep_publications()  # a bad setting fails before anything is written
    plan = plan or plan_latest(paths, year, as_of)
    root = paths.home / "published" / str(year)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
    partial = root / f".{run_id}.partial"
    partial.mkdir()
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    files, basis = [], []
    with connect(paths, read_only=True) as con:  # the analysts' copy is patched meanwhile
        referential = [dict(zip(("check", "records", "orphans", "share", "gate", "over_gate"), r)) for r in con.execute(
            "select check_name, records, orphans, orphan_share, gate, over_gate from marts.referential_checks "
            "order by check_name").fetchall()]
        inputs = inputs_used(con)
        for ranking in RANKINGS:
            select = _rounded_select(con, ranking)
            rows = con.execute(f"select count(*) from ({select})").fetchone()[0]
            for fmt, options in (("csv", "format csv, header true"), ("parquet", "format parquet")):
                out = partial / f"rankings_{ranking}.{fmt}"
                con.execute(f"copy ({select}) to {sql_str(str(out))} ({options})")
                _fsync(out)
                files.append({"file": out.name, "ranking": ranking, "format": fmt, "rows": rows,
                              "sha256": sha256_file(out)})
                if pause:
                    import time
                    time.sleep(pause)
                    pause = 0
        (partial / BASIS).mkdir()
        for mart in BASIS_MARTS:
            out = partial / BASIS / f"{mart}.parquet"
            con.execute(f"copy (select * from marts.{mart} order by entity_code) to {sql_str(str(out))} "
                        "(format parquet)")
            _fsync(out)
            basis.append({"file": f"{BASIS}/{out.name}", "mart": mart,
                          "rows": con.execute(f"select count(*) from marts.{mart}").fetchone()[0],
                          "sha256": sha256_file(out)})
    manifest = {
        "run_id": run_id, "year": year, "as_of": as_of.isoformat(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "configuration": {"sha256": methodology.sha256, "source": methodology.source, "values": methodology.values},
        "inputs": inputs, "quality_checks": checks, "referential_checks": referential, "files": files,
        "basis": basis,
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    _fsync(partial / "manifest.json")
    folder = root / run_id
    if folder.exists():  # a re-run of the same run id (a cleared Airflow task) replaces its folder
        stale = root / f".{run_id}.replaced"
        shutil.rmtree(stale, ignore_errors=True)
        os.rename(folder, stale)
        os.rename(partial, folder)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.rename(partial, folder)
    if plan.becomes_latest:
        link_tmp = root / f".latest.{run_id}"
        link_tmp.unlink(missing_ok=True)
        os.symlink(run_id, link_tmp)
        os.replace(link_tmp, root / "latest")  # the one atomic step that makes it the latest
    _fsync(root)
    if keep is not None:
        try:
            prune_publications(root, keep)
        except OSError as e:  # the new publication is live: a failed clean-up must not undo the run
            log.warning("could not remove old publications' files under %s (%s); they stay", root, e)
    return Publication(folder, root / "latest", manifest, plan)


def keep_publications() -> int | None:
    """$PARITRANA_KEEP_PUBLICATIONS: None (keep every publication's files) or at least 1."""
    return count_setting(KEEP_PUBLICATIONS_ENV, "all", "publications", allow_all=True)


def prune_publications(root: Path, keep: int) -> list[Path]:
    """In one year's folder, remove the published files of all but the `keep` most recent
    publications (by their manifest's creation time), never the one `latest` names. Each
    pruned folder keeps manifest.json and gains pruned.json (when, which files, why).
    Returns the folders pruned now. A publication is a night's rankings: at national size
    about 190 MB with basis/, so keeping every one outgrows the warehouse within weeks."""
    current = (root / "latest").resolve() if (root / "latest").exists() else None
    published = []
    for folder in root.iterdir():
        manifest = folder / "manifest.json"
        # Folders pruned before are passed over unread: a manifest lists every input so far,
        # and reading all of them each night would grow with the nights.
        if folder.name.startswith(".") or folder.is_symlink() or not manifest.is_file() \
                or (folder / PRUNED).exists():
            continue
        published.append((json.loads(manifest.read_text())["created_at"], folder.name, folder))
    pruned = []
    for _, _, folder in sorted(published, reverse=True)[keep:]:
        removed = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
        if folder.resolve() == current or not removed:
            continue
        for name in removed:
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        record = {"pruned_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "removed": removed, "reason": f"{KEEP_PUBLICATIONS_ENV}={keep}: only the {keep} most recent "
                  "publications keep their files; manifest.json keeps each file's row count and sha256"}
        (folder / PRUNED).write_text(json.dumps(record, indent=1) + "\n")
        pruned.append(folder)
    return pruned


class NothingPublished(FileNotFoundError):
    pass


def find_publication(paths: Paths, run_id: str, year: int | None = None) -> Path:
    """The folder of publication `run_id` with its files, in `year`'s folder or, without a
    year, in the year folder that has it (PARITRANA_KEEP_PUBLICATIONS may have removed the
    files: its manifest then still records what they were)."""
    published = paths.home / "published"
    years = [str(year)] if year is not None else sorted(p.name for p in published.iterdir()) \
        if published.is_dir() else []
    valid = "/" not in run_id and not run_id.startswith(".")
    found = [published / y / run_id for y in years if valid and (published / y / run_id / "manifest.json").is_file()]
    if not found:
        root = published / str(year) if year is not None else published
        known = sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file() and not p.is_symlink()) \
            if year is not None and root.is_dir() else []
        raise NothingPublished(f"no publication {run_id!r}" + (f" for {year}" if year is not None else "")
                               + f" under {root}"
                               + (f", which holds {len(known)} (their names are their run ids)" if known else ""))
    folder = found[0]
    if (folder / PRUNED).exists():
        raise NothingPublished(f"the files of publication {run_id} were removed ({folder / PRUNED} says when and "
                               f"why); its manifest.json keeps their row counts and sha256")
    return folder


def read_manifest(folder: Path) -> dict:
    """A publication's manifest.json (outputs.md §2)."""
    return json.loads((folder / "manifest.json").read_text())


def latest(paths: Paths, year: int) -> Path | None:
    link = paths.home / "published" / str(year) / "latest"
    return link.resolve() if link.exists() else None


def versions_note(then: str | None, now: str | None) -> str | None:
    """Two publications computed by different versions of the product: a number may have
    moved with the code (a fix), not with the deliveries or the configuration."""
    if then == now:
        return None
    return (f"computed by another version of the product: {then or 'unrecorded'} → {now or 'unrecorded'} "
            "(what each version changed: CHANGELOG.md)")
