"""Sizes and calibration targets of the generator profiles (outputs.md §1)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClaimsTarget:
    """Exact figures the pipeline must report for one province and year."""

    province: str
    paid_count: int
    paid_idr: int
    scholarship_children: int
    scholarship_idr: int


@dataclass(frozen=True)
class Profile:
    name: str
    year: int
    employed: int  # employed population of the whole profile at scale 1
    informal_share: float
    active_participants: int
    segment_shares: tuple[float, float, float, float]  # PU, BPU, JAKON, PMI among active
    employers: int
    micro_share: float
    paid_claims_per_year: int
    participants_format: str  # csv | csv.gz
    claims_target: ClaimsTarget | None = None
    ump: dict | None = None  # province -> {year: UMP}; others drawn


PROFILES = {
    "demo": Profile(
        name="demo", year=2024, employed=240_000, informal_share=0.62, active_participants=24_000,
        segment_shares=(0.60, 0.25, 0.12, 0.03), employers=900, micro_share=0.75,
        paid_claims_per_year=2_000, participants_format="csv.gz",
        ump={"17": {2023: 2_418_280, 2024: 2_507_079}},
    ),
    "bengkulu-2024": Profile(
        name="bengkulu-2024", year=2024, employed=1_101_234, informal_share=0.66,
        active_participants=212_000, segment_shares=(0.55, 0.30, 0.13, 0.02), employers=6_500,
        micro_share=0.78, paid_claims_per_year=15_908, participants_format="csv.gz",
        claims_target=ClaimsTarget("17", 15_908, 205_700_000_000, 429, 1_680_000_000),
        ump={"17": {2023: 2_418_280, 2024: 2_507_079}},
    ),
    "national": Profile(
        name="national", year=2024, employed=144_640_000, informal_share=0.58,
        active_participants=45_200_000, segment_shares=(29.3 / 45.2, 9.9 / 45.2, 5.3 / 45.2, 0.7 / 45.2),
        employers=840_000, micro_share=678 / 840, paid_claims_per_year=4_200_000,
        participants_format="csv", ump={"17": {2023: 2_418_280, 2024: 2_507_079},
                                        "31": {2023: 4_901_798, 2024: 5_067_381}},
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}") from None
