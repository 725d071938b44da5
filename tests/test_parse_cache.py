"""dbt's saved parse, shared by the homes of one machine (paritrana/parse_cache.py)."""
from __future__ import annotations

import os
import shutil

import duckdb

from paritrana import parse_cache
from paritrana.methodology import DBT_PROJECT_DIR

from conftest import paritrana

RANKINGS = ("rankings_pemda_provinsi", "rankings_pemda_kabkota", "rankings_badan_usaha", "rankings_umk")


def test_a_new_home_starts_from_the_parse_another_home_saved_and_builds_the_same(demo, tmp_path):
    """The first new home parses the whole project and leaves its parse in the cache; the
    next new home starts from it, parses nothing, and builds the same rankings."""
    cache = tmp_path / "cache"
    logs = {}
    for name in ("first", "second"):
        result = paritrana("run", "--landing", str(demo.landing), "--year", "2024", "--home", str(tmp_path / name),
                           env={"PARITRANA_CACHE": str(cache)})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        logs[name] = (tmp_path / name / "dbt" / "logs" / "dbt.log").read_text()
        if name == "first":
            assert len(list(cache.glob("*.msgpack"))) == 1
    assert "Unable to do partial parsing because saved manifest not found" in logs["first"]
    assert "Partial parsing enabled" in logs["second"] and "Unable to do partial parsing" not in logs["second"], \
        [line for line in logs["second"].splitlines() if "parsing" in line.lower()]

    with duckdb.connect() as con:
        for name in ("first", "second"):
            con.execute(f"attach '{tmp_path / name / 'warehouse.duckdb'}' as {name} (read_only)")
        for table in RANKINGS:
            first, second = (con.execute(f"select * from {db}.marts.{table} order by all").fetchall()
                             for db in ("first", "second"))
            assert first and first == second, table


def _target_with_a_parse(tmp_path, content: bytes = b"saved parse"):
    target = tmp_path / "home" / "dbt" / "target"
    target.mkdir(parents=True)
    (target / parse_cache.SAVED).write_bytes(content)
    return target


def test_a_seed_is_kept_once_given_only_to_a_home_without_a_parse_and_off_means_off(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITRANA_CACHE", str(tmp_path / "cache"))
    key = parse_cache.key(DBT_PROJECT_DIR, "{}")
    parse_cache.keep(_target_with_a_parse(tmp_path / "a", b"first"), key)
    parse_cache.keep(_target_with_a_parse(tmp_path / "b", b"second"), key)  # the cache has one already
    assert (tmp_path / "cache" / f"{key}.msgpack").read_bytes() == b"first"
    assert (tmp_path / "cache" / f"{key}.msgpack").stat().st_mode & 0o044 == 0o044  # others may read it
    assert not list((tmp_path / "cache").glob(".seed-*"))  # no half-written file left behind

    new = tmp_path / "new" / "dbt" / "target"
    assert parse_cache.seed(new, key) and (new / parse_cache.SAVED).read_bytes() == b"first"
    own = _target_with_a_parse(tmp_path / "own", b"its own")
    assert not parse_cache.seed(own, key) and (own / parse_cache.SAVED).read_bytes() == b"its own"
    assert not parse_cache.seed(tmp_path / "other" / "target", "another project's key")

    monkeypatch.setenv("PARITRANA_CACHE", "off")
    assert parse_cache.key(DBT_PROJECT_DIR, "{}") is None  # nothing hashed for a cache that is off
    assert not parse_cache.seed(tmp_path / "off" / "target", key)
    parse_cache.keep(_target_with_a_parse(tmp_path / "c"), "a key kept while off")
    assert not (tmp_path / "cache" / "a key kept while off.msgpack").exists()


def test_the_cache_keeps_the_most_recently_used_seeds(tmp_path, monkeypatch):
    """Pruning keeps the KEEP seeds used last, not the KEEP made last: the oldest seed,
    given to a new home (or kept again by a home's own parse) since, outlives newer ones."""
    monkeypatch.setenv("PARITRANA_CACHE", str(tmp_path / "cache"))
    target = _target_with_a_parse(tmp_path)
    for i in range(parse_cache.KEEP):
        parse_cache.keep(target, f"key{i}")
        os.utime(tmp_path / "cache" / f"key{i}.msgpack", (1_000_000 + i, 1_000_000 + i))
    assert parse_cache.seed(tmp_path / "new home" / "target", "key0")  # the oldest made, used now
    parse_cache.keep(target, "key1")  # a home whose own parse is this project's: in use too
    parse_cache.keep(target, "new1")
    parse_cache.keep(target, "new2")
    assert sorted(p.stem for p in (tmp_path / "cache").glob("*.msgpack")) == \
        sorted(["key0", "key1", "new1", "new2"] + [f"key{i}" for i in range(4, parse_cache.KEEP)])


def test_the_key_follows_what_dbt_checks_and_not_the_nights_date(tmp_path, monkeypatch):
    """A seed is for one project's bytes, --vars and profile settings; the year and as-of
    date reach the SQL through the environment and must not split the cache."""
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.delenv("PARITRANA_MEMORY_LIMIT", raising=False)
    base = parse_cache.key(project, "{}")
    assert parse_cache.key(project, "{}") == base
    monkeypatch.setenv("PARITRANA_AS_OF", "2024-06-30")
    monkeypatch.setenv("PARITRANA_YEAR", "2023")
    assert parse_cache.key(project, "{}") == base
    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")  # dbt's output, not the project
    assert parse_cache.key(project, "{}") == base

    assert parse_cache.key(project, '{"config_sha256": "other"}') != base
    monkeypatch.setenv("PARITRANA_MEMORY_LIMIT", "1GB")  # the profile reads it
    assert parse_cache.key(project, "{}") != base
    monkeypatch.delenv("PARITRANA_MEMORY_LIMIT")
    model = project / "models" / "marts" / "umk_indicators.sql"
    model.write_text(model.read_text() + "\n")
    assert parse_cache.key(project, "{}") != base
