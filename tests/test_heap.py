"""heap.frozen: a step's collections leave out what existed before it, and nothing is lost."""
import gc
import weakref

import duckdb
import pytest

from paritrana import heap


class Node:
    pass


def _garbage_cycle() -> weakref.ref:
    node = Node()
    node.me = node
    return weakref.ref(node)


@pytest.fixture
def no_automatic_collections():
    # Only the collections the test starts may run, so that what it sees is theirs.
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


def test_a_step_collects_what_it_made_and_leaves_older_garbage_until_it_ends(no_automatic_collections):
    before = gc.get_freeze_count()
    older = _garbage_cycle()
    with heap.frozen():
        assert gc.get_freeze_count() > before
        made_inside = _garbage_cycle()
        gc.collect()
        assert made_inside() is None
        assert older() is not None
    assert gc.get_freeze_count() == before
    gc.collect()
    assert older() is None


def test_an_inner_step_freezes_more_and_only_the_outermost_gives_everything_back(no_automatic_collections):
    before = gc.get_freeze_count()
    with heap.frozen():
        made_by_the_outer_step = _garbage_cycle()
        with heap.frozen():
            gc.collect()
            assert made_by_the_outer_step() is not None
        assert gc.get_freeze_count() > before
        gc.collect()
        assert made_by_the_outer_step() is not None
    assert gc.get_freeze_count() == before
    gc.collect()
    assert made_by_the_outer_step() is None


def test_a_step_that_raises_gives_everything_back(no_automatic_collections):
    before = gc.get_freeze_count()
    with pytest.raises(RuntimeError), heap.frozen():
        raise RuntimeError("the step failed")
    assert gc.get_freeze_count() == before


def test_a_process_that_froze_before_its_first_step_keeps_it_so(no_automatic_collections):
    """As a task process forked from Airflow's LocalExecutor, which froze before forking."""
    assert gc.get_freeze_count() == 0  # this test's own freeze is the one to keep
    gc.freeze()
    try:
        theirs = gc.get_freeze_count()
        with heap.frozen():
            made_by_the_step = _garbage_cycle()
        assert gc.get_freeze_count() >= theirs
        gc.collect()
        assert made_by_the_step() is None  # made after the freeze: still collected
    finally:
        gc.unfreeze()


def test_the_build_and_the_gate_release_duckdb_walking_only_what_they_made(demo, tmp_path, monkeypatch):
    """The collections that free DuckDB's files after dbt and after GX run with what the
    process held before the step frozen, and the step gives it back; the warehouse is free
    after each (the build's publication and the gate's aggregates need it)."""
    import datetime as dt

    from paritrana import methodology, transform
    from paritrana.pipeline import build_step
    from paritrana.quality import gate, gx_duckdb

    work = demo.copy(tmp_path / "w")
    config = methodology.load(None, work.home_dir, 2024)
    frozen_at_release: dict[str, list[int]] = {"dbt": [], "gx": []}

    def noting(kind, release):
        def noted():
            frozen_at_release[kind].append(gc.get_freeze_count())
            release()
        return noted

    monkeypatch.setattr(transform, "_release_duckdb", noting("dbt", transform._release_duckdb))
    monkeypatch.setattr(gx_duckdb, "release_connections", noting("gx", gx_duckdb.release_connections))
    before = gc.get_freeze_count()

    build_step(work.paths, 2024, dt.date(2024, 12, 31), config, progress=None)
    assert len(frozen_at_release["dbt"]) == 2  # the build and its docs
    assert all(count > before for count in frozen_at_release["dbt"])
    assert gc.get_freeze_count() == before

    assert gate.validate(work.paths, "heap", config, ["raw"]).passed
    assert frozen_at_release["gx"] and all(count > before for count in frozen_at_release["gx"])
    assert gc.get_freeze_count() == before
    with duckdb.connect(str(work.paths.warehouse)) as con:  # nothing of dbt's or GX's holds it
        assert con.execute("select count(*) from marts.rankings_umk").fetchone()[0] > 0
