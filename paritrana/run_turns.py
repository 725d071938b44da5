"""Whose turn it is to write the warehouse, across Airflow's task processes.

The writer lock (`warehouse.exclusive`) keeps two tasks from writing at once, but a DAG run
is a chain of tasks: another run's build between this run's build and its gate would have
this gate check that build, and this run's publish refuse it. Airflow keeps scheduled runs
apart (`max_active_runs=1`) but not backfill runs, whose own limit is 10 unless given, nor
a backfill from the scheduled night. So a run takes the warehouse's turn before its first
write and gives it back in its summary; runs that find it held wait, and take it in the
order they started, which is the order a backfill created them in (by date, or backwards
with `--run-backwards`), so its last date is published last. A holder or waiter that is no
longer live (failed, marked by hand, deleted) has lost its place: Airflow's own run state
says so, so the turn needs no timeout and no hand to clear it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .settings import Paths
from .warehouse import WarehouseBusy

if TYPE_CHECKING:
    from .airflow_runs import RunState


# The states in which Airflow counts a run live: it holds its turn, or keeps its place, only
# in these (the tasks ask Airflow's task API, `paritrana run` its command line).
LIVE_STATES = ("queued", "running")


@dataclass(frozen=True)
class Run:
    dag_id: str
    run_id: str  # Airflow's run id, as its UI and CLI show it
    started: str  # when Airflow started the run: the order of the queue

    def text(self) -> str:
        return f"run {self.run_id} of {self.dag_id} (started {self.started})"

    def same(self, other: Run | None) -> bool:
        return other is not None and (self.dag_id, self.run_id) == (other.dag_id, other.run_id)


@dataclass
class _State:
    holder: Run | None = None
    since: str | None = None
    waiting: list[Run] = field(default_factory=list)


class NotYourTurn(WarehouseBusy):
    """Another live run holds the turn: transient, so the task retries."""


@contextlib.contextmanager
def _guarded(paths: Paths) -> Iterator[None]:
    # Held only to read and replace the turn's file: two runs asking at once get one answer.
    paths.home.mkdir(parents=True, exist_ok=True)
    with paths.turn.with_suffix(".lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield


def _read(paths: Paths) -> _State:
    try:
        raw = json.loads(paths.turn.read_text())
        return _State(Run(**raw["holder"]) if raw.get("holder") else None, raw.get("since"),
                      [Run(**w) for w in raw.get("waiting", [])])
    except FileNotFoundError:
        return _State()
    except (ValueError, TypeError, KeyError):  # cut short by a crash while written: nobody's
        return _State()


def _write(paths: Paths, state: _State) -> None:
    if state.holder is None and not state.waiting:
        paths.turn.unlink(missing_ok=True)
        return
    staged = paths.turn.with_suffix(".partial")
    staged.write_text(json.dumps({"holder": asdict(state.holder) if state.holder else None, "since": state.since,
                                  "waiting": [asdict(w) for w in state.waiting]}, indent=1))
    os.replace(staged, paths.turn)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def holder(paths: Paths) -> Run | None:
    return _read(paths).holder


def waiting(paths: Paths) -> list[Run]:
    return _read(paths).waiting


def take(paths: Paths, me: Run, live: Callable[[Run], bool], alone: bool = True) -> Run | None:
    """Takes the turn for `me` when nobody live holds it and no live run that started
    before `me` waits for it; else queues `me` and returns the run it waits for (the
    holder, or the waiter ahead). None when `me` holds the turn now. `live(run)` asks
    Airflow whether that run is still queued or running; `alone` whether `me` is the
    DAG's only live run. If not, a first ask only queues `me` (and returns `me`): runs
    started together (a backfill's) ask in any order, and the one that started first
    must find the others queued behind it, not ahead."""
    return ask(paths, me, live, alone)[0]


def ask(paths: Paths, me: Run, live: Callable[[Run], bool], alone: bool = True) -> tuple[Run | None, Run | None]:
    """`take`'s answer, and who holds the turn after it (`me`, another live run, or None),
    from the same look at the turn's file: a waiting run's log says whom it waits for."""
    with _guarded(paths):
        state = _read(paths)
        if me.same(state.holder):
            return None, me
        holding = state.holder if state.holder and live(state.holder) else None
        queue = [w for w in state.waiting if me.same(w) or live(w)]
        first_ask = not any(me.same(w) for w in queue)
        if first_ask:
            queue.append(me)
        queue.sort(key=lambda w: (w.started, w.run_id))
        if first_ask and not alone and holding is None:
            _write(paths, _State(None, None, queue))
            return me, None
        if holding is None and me.same(queue[0]):
            _write(paths, _State(me, _now(), queue[1:]))
            return None, me
        _write(paths, _State(holding, state.since if holding else None, queue))
        return holding or queue[0], holding


def hold(paths: Paths, me: Run, live: Callable[[Run], bool]) -> None:
    """For a task that writes: its run must hold the turn, else NotYourTurn. A run whose
    task was cleared and re-run after it ended takes the turn again when nobody live
    holds it, ahead of the queue: its night was begun before theirs."""
    with _guarded(paths):
        state = _read(paths)
        if me.same(state.holder):
            return
        if state.holder and live(state.holder):
            raise NotYourTurn(f"{state.holder.text()} holds the warehouse's turn ({paths.turn}): this run's tasks "
                              "wait until it ends, so that no build comes between another run's build and its gate")
        _write(paths, _State(me, _now(), [w for w in state.waiting if not me.same(w)]))


def give_back(paths: Paths, me: Run) -> bool:
    """Gives the turn back if `me` holds it (and leaves the queue); True when it held it."""
    with _guarded(paths):
        state = _read(paths)
        held = me.same(state.holder)
        queue = [w for w in state.waiting if not me.same(w)]
        _write(paths, _State(None if held else state.holder, None if held else state.since, queue))
        return held


def refuse_if_held(paths: Paths, ask_airflow: Callable[[Run], RunState]) -> tuple[Run, RunState] | None:
    """For `paritrana run`, which Airflow cannot see: it would write between an Airflow
    run's tasks (its build and its gate, say), and that run would then fail to publish.
    A holder that Airflow shows ended (failed or marked so by hand, its summary never run)
    has lost the turn, as the tasks would find: it is released, the queue kept, and the
    holder and Airflow's answer returned. Otherwise, while held, NotYourTurn says whose
    turn it is and what Airflow said. Airflow is asked outside the guard: its answer takes
    seconds, and the tasks' asks must not wait on it."""
    with _guarded(paths):
        held = _read(paths).holder
    if held is None:
        return None
    answer = ask_airflow(held)
    if answer.ended:
        with _guarded(paths):
            state = _read(paths)
            if held.same(state.holder):
                _write(paths, _State(None, None, state.waiting))
                return held, answer
        return refuse_if_held(paths, ask_airflow)  # another run took the turn meanwhile: ask of that one
    then = (f"Run again when it has ended: a run whose scheduler or worker is gone stays {answer.state} until it "
            "is marked failed in Airflow, and the next run then releases the turn" if answer.state else
            "Run again when it has ended, with AIRFLOW_HOME naming its Airflow so that the run can ask it; if it "
            f"has ended and no Airflow can say so (the run deleted, its Airflow gone), delete {paths.turn} first")
    raise NotYourTurn(f"{held.text()} holds the warehouse's turn ({paths.turn}): an Airflow run is between its "
                      f"first write and its summary, and this run would come between its steps; {answer.said}. "
                      f"{then}")
