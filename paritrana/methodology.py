"""The methodology configuration (methodology.md §8): defaults, overrides, validation, hash.

The defaults live in one place, the `methodology` var of dbt_project/dbt_project.yml, so
dbt run by hand and `paritrana run` agree. Evaluators override any part of it per year in
a YAML file (`paritrana run --config FILE`, or HOME/methodology-<year>.yml when present).
The merged configuration is validated before any work starts and its sha256 goes on every
mart row and into every manifest.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
CATEGORIES = ("pemda", "badan_usaha", "umk")


@dataclass(frozen=True)
class Indicator:
    name: str
    code: str
    numerator: str | None  # a column of the category's mart
    denominator: str | None  # a column, or a number as text
    reads: str  # what numerator ÷ denominator counts, in words
    rule: str = ""  # the methodology's special cases


# Each indicator of methodology.md §3-5, in its order, and the mart columns its value is
# computed from: `paritrana explain` shows them, the workbook's Indicators sheet describes them.
INDICATORS = {
    "pemda": [
        Indicator("coverage", "P1", "participants_active", "employed",
                  "active participants in the territory ÷ employed population of the workforce row"),
        Indicator("vulnerable_coverage", "P2", "participants_active_bpu", "informal_employed",
                  "active BPU participants in the territory ÷ informal employed"),
        Indicator("non_asn_coverage", "P3", "non_asn_funded", "non_asn_headcount",
                  "non-ASN staff covered through this government's APBD/APBDES ÷ its non-ASN headcount",
                  "0 when the headcount is 0 and none are covered; at most 1"),
        Indicator("apbd_support", "P4", "apbd_funded", "informal_employed",
                  "participants funded by this government's APBD, non-ASN staff aside, ÷ informal employed of "
                  "the territory"),
        Indicator("regulation", "P5", "has_regulation", None, "a regional regulation is in force (1) or not (0)"),
        Indicator("employer_compliance", "P6", "employers_compliant", "employers_assessed",
                  "compliant employers ÷ active employers of the territory with a bill counting for the year",
                  "1 when none is assessed"),
        Indicator("innovation", "P7", "panel_innovation_score", "100", "the panel's innovation score ÷ 100"),
    ],
    "badan_usaha": [
        Indicator("worker_registration", "B1", "participants", "reported_workforce",
                  "PU participants ÷ reported workforce", "at most 1"),
        Indicator("wage_compliance", "B2", "participants_at_minimum_wage", "participants",
                  "participants paid at least the applicable minimum wage ÷ participants", "0 without participants"),
        Indicator("program_compliance", "B3", "participants_in_mandatory_programmes", "participants",
                  "participants in every mandatory programme of the size class ÷ participants",
                  "0 without participants"),
        Indicator("contribution_timeliness", "B4", "bills_paid_on_time", "bills_for_year",
                  "bills counting for the year paid on time ÷ bills counting for the year"),
        Indicator("ecosystem_extension", "B5", "csr_participants", "reported_workforce",
                  "participants funded by this employer's CSR ÷ reported workforce"),
    ],
    "umk": [
        Indicator("enrolment", "U1", "participants", "reported_workforce", "participants ÷ reported workforce",
                  "at most 1; 1 when the reported workforce is 0 and there is a participant"),
        Indicator("payment_continuity", "U2", "bills_paid_by_as_of", "bills_for_year",
                  "bills counting for the year paid by the as-of date ÷ bills counting for the year"),
        Indicator("program_breadth", "U3", None, "participants",
                  "mean over the participants of (JKK + JKM + JHT) ÷ 3"),
    ],
}
SIZE_CLASSES = ("BESAR", "MENENGAH", "KECIL", "MIKRO")
PROGRAMMES = ("jkk", "jkm", "jht", "jp", "jkp")


class ConfigError(ValueError):
    """A configuration that methodology §8 refuses; the message names the setting."""


@dataclass(frozen=True)
class Methodology:
    values: dict
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.values).encode()).hexdigest()


# The award's first year; the last leaves room for the days after Y-12-31 (deltas, nights).
FIRST_YEAR, LAST_YEAR = 2017, 9998


def require_award_year(year: int, given_as: str = "--year") -> None:
    """An assessment year the award has: `run --year 1999` loaded everything, then failed
    its gate on empty rankings; `--year 0` and `generate --year 1999` failed with Python's
    and numpy's words. `given_as` names the year as its user gave it (an option, a DAG param)."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"{given_as} must be from {FIRST_YEAR}, the award's first year, to {LAST_YEAR} (got {year})")


def require_as_of_in_year(year: int, as_of: dt.date) -> None:
    """methodology.md §1: D is Y-12-31, or for a provisional run a date in Y. Any other date
    would publish year Y's ranking judged on another year's states and payments."""
    if as_of.year != year:
        raise ValueError(f"as-of date {as_of} is not in the assessment year {year}: it is {year}-12-31 "
                         f"(the default) or, for a provisional run, a date in {year} (methodology.md §1)")


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def defaults() -> dict:
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return copy.deepcopy(project["vars"]["methodology"])


def _merge(base: dict, override: dict, where: str = "") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in base:
            raise ConfigError(f"unknown setting {path!r} (known: {', '.join(map(str, base))})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path} must be a mapping")
            merged[key] = _merge(base[key], value, path)
        else:
            merged[key] = value
    return merged


def _number(value, path: str) -> float:
    # YAML's .nan and .inf are floats: a NaN weight passed the sum check (NaN compares false)
    # and made every total NaN.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path} must be a finite number, got {value!r}")
    return float(value)


def validate(values: dict) -> None:
    for category in CATEGORIES:
        weights = values["weights"][category]
        for name, w in weights.items():
            if _number(w, f"weights.{category}.{name}") < 0:
                raise ConfigError(f"weights.{category}.{name} is {w}: weights must be non-negative")
        total = sum(float(w) for w in weights.values())
        if abs(total - 100) > 1e-9:
            raise ConfigError(f"weights of {category} sum to {total:g}, not 100 ({weights})")
        for name, t in values["targets"][category].items():
            if _number(t, f"targets.{category}.{name}") <= 0:
                raise ConfigError(f"targets.{category}.{name} is {t}: targets must be positive")
    for size_class, programmes in values["mandatory_programmes"].items():
        if size_class not in SIZE_CLASSES:
            raise ConfigError(f"mandatory_programmes.{size_class}: not a size class {SIZE_CLASSES}")
        if not isinstance(programmes, list) or not programmes or any(p not in PROGRAMMES for p in programmes):
            raise ConfigError(f"mandatory_programmes.{size_class} must be a non-empty list of {PROGRAMMES}")
    threshold = values["arrears_threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ConfigError(f"arrears_threshold must be a whole number of months >= 0, got {threshold!r}")
    gate = _number(values["referential_gate"], "referential_gate")
    if not 0 <= gate <= 1:
        raise ConfigError(f"referential_gate is a share between 0 and 1, got {gate}")


def load(config_file: Path | None = None, home: Path | None = None, year: int | None = None) -> Methodology:
    """Defaults, overridden by config_file, else by HOME/methodology-<year>.yml if it exists."""
    values, source = defaults(), "defaults (dbt_project/dbt_project.yml)"
    if config_file is None and home is not None and year is not None:
        candidate = Path(home) / f"methodology-{year}.yml"
        config_file = candidate if candidate.exists() else None
    if config_file is not None:
        path = Path(config_file)
        if not path.exists():
            raise FileNotFoundError(f"configuration file {path} does not exist")
        try:
            override = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"configuration file {path} is not valid YAML: {e}") from None
        if not isinstance(override, dict):
            raise ConfigError(f"configuration file {path} must hold a mapping")
        try:
            values = _merge(values, override.get("methodology", override))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        source = str(path)
    try:
        validate(values)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return Methodology(values, source)
