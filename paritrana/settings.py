"""Where things live. One place, so the CLI, the DAG and the tests agree."""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "PARITRANA_HOME"


def utc_stamp(now: dt.datetime | None = None) -> str:
    """20261207T041500Z: the time part of every run id the product makes, so that run ids
    (and the report folders named for them) sort by when they started."""
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def reader_copy(self) -> Path:
        """The analysts' read-only copy, replaced atomically after each publication: the
        working file is locked by the writer during runs (stack.md, DuckDB)."""
        return self.home / "analytics.duckdb"

    @property
    def lock(self) -> Path:
        return self.home / ".writer.lock"

    @property
    def turn(self) -> Path:
        """Which DAG run holds the warehouse between its first write and its summary
        (run_turns)."""
        return self.home / ".run_turn.json"

    @property
    def tmp(self) -> Path:
        return self.home / "tmp"

    @property
    def runs(self) -> Path:
        return self.home / "runs"


# Characters a home's path may not hold; spaces, quotes, '%' and non-ASCII letters are fine
# (tested). Found by running with each: every run failed deep inside, in three ways.
_NOT_IN_HOME = ("#", "?", "$")


def resolve_home(home: str | Path | None = None) -> Paths:
    """--home, else $PARITRANA_HOME, else ./paritrana_home (outputs.md §1)."""
    chosen = Path(home or os.environ.get(HOME_ENV) or "paritrana_home").resolve()
    unusable = [c for c in _NOT_IN_HOME if c in str(chosen)]
    if unusable:
        raise ValueError(f"the home {chosen} holds {' and '.join(repr(c) for c in unusable)}, which the stack "
                         "reads as syntax in the paths it is given (DuckDB takes '?' for options, dbt-duckdb cuts "
                         "a path at '#', Great Expectations takes '$' for a variable): choose a folder without them")
    chosen.mkdir(parents=True, exist_ok=True)
    return Paths(chosen)


def choice_setting(name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` from the environment, the first by default. Raises ValueError
    naming the variable, so callers refuse a bad value before any work."""
    value = os.environ.get(name, "").strip() or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)} (got {value!r})")
    return value


def count_setting(name: str, default: str, what: str, allow_all: bool = False, minimum: int = 1) -> int | None:
    """A count from the environment: a whole number, at least `minimum`, or, where
    `allow_all`, "all" (None: no limit). Raises ValueError naming the variable, so
    callers refuse a bad value before any work."""
    value = os.environ.get(name, "").strip() or default
    if allow_all and value == "all":
        return None
    if not value.isdigit() or int(value) < minimum:
        expected = "'all' or a whole number" if allow_all else "a whole number"
        raise ValueError(f"{name} must be {expected} of {what}, at least {minimum} (got {value!r})")
    return int(value)
