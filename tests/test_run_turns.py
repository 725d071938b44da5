"""Runs take turns at the warehouse (run_turns), unit by unit with Airflow's answer to "is
this run live?" given as a set; test_scheduler.py runs it under Airflow's own scheduler."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from paritrana import run_turns
from paritrana.airflow_runs import RunState
from paritrana.run_turns import NotYourTurn, Run
from paritrana.settings import Paths
from paritrana.warehouse import WarehouseBusy


def run(name: str, started: str) -> Run:
    return Run("paritrana_nightly", f"backfill__{name}", f"2026-12-06T00:16:45.{started}+00:00")


A, B, C = run("a", "672300"), run("b", "672530"), run("c", "672738")  # started in this order


def test_the_first_run_takes_the_turn_and_the_others_wait_for_it(tmp_path):
    paths, live = Paths(tmp_path), {A, B, C}.__contains__
    assert run_turns.take(paths, B, live) is None  # nobody held it: B's
    assert run_turns.take(paths, B, live) is None  # asked again (a reschedule): still B's
    assert run_turns.take(paths, A, live) == B  # A started first but B holds the turn
    assert run_turns.take(paths, C, live) == B
    assert run_turns.holder(paths) == B and run_turns.waiting(paths) == [A, C]
    record = json.loads(paths.turn.read_text())  # what a data engineer reads in HOME
    assert record["holder"]["run_id"] == "backfill__b" and [w["run_id"] for w in record["waiting"]] == [
        "backfill__a", "backfill__c"]


def test_waiters_take_it_in_the_order_their_runs_started(tmp_path):
    paths, live = Paths(tmp_path), {A, B, C}.__contains__
    run_turns.take(paths, B, live)
    run_turns.take(paths, C, live)  # C asks first...
    run_turns.take(paths, A, live)
    assert run_turns.give_back(paths, B)
    assert run_turns.take(paths, C, live) == A  # ...but A started first: C still waits, now for A
    assert run_turns.take(paths, A, live) is None
    assert run_turns.take(paths, C, live) == A
    assert run_turns.give_back(paths, A)
    assert run_turns.take(paths, C, live) is None
    assert run_turns.give_back(paths, C)
    assert not paths.turn.exists()  # nobody holds it, nobody waits: no file left behind


def test_runs_started_together_take_it_in_their_order_whoever_asks_first(tmp_path):
    """A backfill's runs start together and ask in any order: the first to ask took the
    free turn (with --run-backwards, the night of 2025-01-01 went first of three). A first
    ask beside other live runs now only queues, so the run that started first goes first."""
    paths, live = Paths(tmp_path), {A, B, C}.__contains__
    assert run_turns.take(paths, C, live, alone=False) == C  # queued, not taken
    assert run_turns.take(paths, B, live, alone=False) == B
    assert run_turns.holder(paths) is None and run_turns.waiting(paths) == [B, C]
    assert run_turns.take(paths, C, live, alone=False) == B  # asked again: B started first
    assert run_turns.take(paths, A, live, alone=False) == A  # A, started first of all, asks last
    assert run_turns.take(paths, B, live, alone=False) == A
    assert run_turns.take(paths, A, live, alone=False) is None
    assert run_turns.waiting(paths) == [B, C]
    # a first ask while a live run holds the turn queues as before, behind whoever started first
    assert run_turns.take(paths, run("d", "999999"), {A, B, C, run("d", "999999")}.__contains__, alone=False) == A


def test_a_run_that_is_no_longer_live_loses_the_turn_and_its_place(tmp_path):
    """A holder marked failed by hand, or deleted, never gives the turn back: Airflow's
    run state is what frees it, with no timeout to wait out."""
    paths = Paths(tmp_path)
    run_turns.take(paths, A, {A, B}.__contains__)
    assert run_turns.take(paths, C, {A, B, C}.__contains__) == A
    assert run_turns.take(paths, B, {A, B, C}.__contains__) == A
    # A is over without its summary; B, queued ahead of C, is gone too
    assert run_turns.take(paths, C, {C}.__contains__) is None
    assert run_turns.holder(paths) == C and run_turns.waiting(paths) == []


def test_a_writing_task_fails_to_retry_while_another_live_run_holds_the_turn(tmp_path):
    paths = Paths(tmp_path)
    run_turns.take(paths, A, {A}.__contains__)
    with pytest.raises(NotYourTurn, match=r"run backfill__a of paritrana_nightly .*holds the warehouse's turn") as e:
        run_turns.hold(paths, B, {A, B}.__contains__)
    assert isinstance(e.value, WarehouseBusy)  # the kind of failure Airflow's retries are for
    run_turns.hold(paths, A, {A, B}.__contains__)  # the holder's own tasks go on


def test_a_cleared_task_of_an_ended_run_takes_the_turn_back(tmp_path):
    """Clearing dbt_build of an earlier night after its run ended: nobody live holds the
    turn, so that task takes it, ahead of a waiter, until its run ends again."""
    paths = Paths(tmp_path)
    run_turns.take(paths, B, {B, C}.__contains__)
    run_turns.take(paths, C, {B, C}.__contains__)
    run_turns.give_back(paths, B)
    run_turns.hold(paths, A, {A, C}.__contains__)
    assert run_turns.holder(paths) == A
    assert run_turns.take(paths, C, {A, C}.__contains__) == A
    assert run_turns.take(paths, C, {C}.__contains__) is None  # A's run ended again


def test_giving_back_a_turn_not_held_changes_nothing_but_the_queue(tmp_path):
    paths, live = Paths(tmp_path), {A, B, C}.__contains__
    run_turns.take(paths, A, live)
    run_turns.take(paths, B, live)
    run_turns.take(paths, C, live)
    assert not run_turns.give_back(paths, B)  # B's summary after its sensor timed out
    assert run_turns.holder(paths) == A and run_turns.waiting(paths) == [C]


def test_a_turn_file_cut_short_by_a_crash_holds_nobody(tmp_path):
    paths = Paths(tmp_path)
    paths.turn.write_text('{"holder": {"dag_id": "paritrana_nigh')
    assert run_turns.take(paths, B, {A, B}.__contains__) is None


def test_a_run_by_hand_releases_a_holder_that_airflow_shows_ended_and_keeps_the_queue(tmp_path):
    """`paritrana run` asks Airflow of the holder (airflow_runs.state_of): a failed or
    marked-failed holder, whose summary never gave the turn back, is released; the runs
    waiting keep their places."""
    paths, live = Paths(tmp_path), {A, B, C}.__contains__
    run_turns.take(paths, A, live)
    run_turns.take(paths, B, live)
    asked = []

    def failed(held):
        asked.append(held)
        return RunState("failed", "Airflow shows it failed")

    assert run_turns.refuse_if_held(paths, failed) == (A, RunState("failed", "Airflow shows it failed"))
    assert asked == [A] and run_turns.holder(paths) is None and run_turns.waiting(paths) == [B]
    assert run_turns.refuse_if_held(paths, failed) is None and asked == [A]  # nobody holds it: nothing asked


@pytest.mark.parametrize("answer, then", [
    (RunState("running", "Airflow shows it running"), "stays running until it is marked failed in Airflow"),
    (RunState(None, "Airflow knows no run backfill__a of paritrana_nightly"), "delete {turn} first"),
])
def test_a_run_by_hand_stops_while_the_holder_is_live_or_airflow_cannot_say(tmp_path, answer, then):
    """Not known is not ended: the holder may be another Airflow's run."""
    paths = Paths(tmp_path)
    run_turns.take(paths, A, lambda r: True)
    with pytest.raises(NotYourTurn) as stop:
        run_turns.refuse_if_held(paths, lambda held: answer)
    assert f"{A.text()} holds the warehouse's turn" in str(stop.value) and f"; {answer.said}. " in str(stop.value)
    assert then.format(turn=paths.turn) in str(stop.value)
    assert run_turns.holder(paths) == A


def test_a_holder_that_changes_while_airflow_is_asked_is_asked_of_again(tmp_path):
    """The answer was about the old holder: the run that took the turn meanwhile is live."""
    paths = Paths(tmp_path)
    run_turns.take(paths, A, lambda r: True)

    def ended_as_b_takes_it(held):
        if held == A:
            run_turns.take(paths, B, lambda r: r == B)  # A's cleared summary gave it back; B's sensor took it
            return RunState("failed", "Airflow shows it failed")
        return RunState("running", "Airflow shows it running")

    with pytest.raises(NotYourTurn, match="run backfill__b of paritrana_nightly"):
        run_turns.refuse_if_held(paths, ended_as_b_takes_it)
    assert run_turns.holder(paths) == B


def _ask(home: str, name: str, started: str, answers) -> None:
    answers.put((name, run_turns.take(Paths(Path(home)), run(name, started), lambda r: True) is None))


def test_runs_asking_at_the_same_moment_get_one_turn(tmp_path):
    """Eight task processes asking at once: exactly one is told it holds the turn."""
    ctx = multiprocessing.get_context("fork")
    answers = ctx.Queue()
    asking = [ctx.Process(target=_ask, args=(str(tmp_path), f"n{i}", f"{i:06d}", answers)) for i in range(8)]
    for p in asking:
        p.start()
    for p in asking:
        p.join(30)
    got = dict(answers.get(timeout=5) for _ in asking)
    assert sum(got.values()) == 1
    holder = run_turns.holder(Paths(tmp_path))
    assert got[holder.run_id.removeprefix("backfill__")]
    assert len(run_turns.waiting(Paths(tmp_path))) == 7
