"""Claims, contribution bills and reference extracts of a profile."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .population import CONTRIBUTION_RATE, Employers, Geography, Population, days, to_date_array
from .profiles import Profile
from .tables import BENEFIT_MIX, applicable_wage, exact_split, kpj_of, _str


# PAID in December, re-versioned REJECTED by the first delta: on day 1, so that the figures
# of a history with any number of days count none of them.
REJECTED_IN_JANUARY = 3


@dataclass
class Claims:
    table: pa.Table  # snapshot rows (all versions known on the snapshot date)
    open_ids: np.ndarray  # claim numbers still SUBMITTED on the snapshot date (paid in deltas)
    reject_later: list[dict]  # PAID in December, re-versioned REJECTED by the first delta
    next_number: int


def _claim_ids(year: int, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(f"C{year}", pc.utf8_lpad(pa.array(numbers.astype(np.int64)).cast(pa.string()), 8, "0"), "")


def build_claims(rng, profile: Profile, geo: Geography, emp: Employers, pop: Population, scale: float,
                 days_ahead: int, january_rng) -> Claims:
    """The snapshot's claims. The claims a January delta rejects exist only when there are
    deltas, and come from january_rng: every other row, and the main stream left for what is
    drawn after, are the same whatever the number of days, so that `--days N`'s files are
    those of `--days N+1` without its last day."""
    y = profile.year
    active = np.flatnonzero(pop.active)
    n_y = max(1, round(profile.paid_claims_per_year * scale))
    target = profile.claims_target if scale == 1.0 else None
    n_reject_later = REJECTED_IN_JANUARY if days_ahead else 0
    groups = []
    mix_p = np.array([m[2] for m in BENEFIT_MIX])
    mix_p = mix_p / mix_p.sum()
    number = 1

    def make(n, draw=rng):
        nonlocal number
        who = draw.choice(active, n)
        ids = np.arange(number, number + n)
        number += n
        return who, ids

    # Paid in Y: the calibrated set.
    who, ids = make(n_y)
    if target:
        mix = np.where(np.arange(n_y) < target.scholarship_children, len(BENEFIT_MIX) - 1,
                       rng.choice(len(BENEFIT_MIX) - 1, n_y, p=mix_p[:-1] / mix_p[:-1].sum()))
        rng.shuffle(mix)
    else:
        mix = rng.choice(len(BENEFIT_MIX), n_y, p=mix_p)
    means = np.array([m[3] for m in BENEFIT_MIX])[mix]
    amount = np.round(means * rng.lognormal(-0.08, 0.4, n_y), -3).astype(np.int64)
    amount = np.where(np.array([m[1] for m in BENEFIT_MIX])[mix] == "DEATH_BENEFIT", means, amount)
    if target:
        sch = mix == len(BENEFIT_MIX) - 1
        amount[sch] = exact_split(rng, sch.sum(), target.scholarship_idr, amount[sch].astype(float))
        amount[~sch] = exact_split(rng, (~sch).sum(), target.paid_idr - target.scholarship_idr,
                                   amount[~sch].astype(float))
    paid = rng.integers(days(dt.date(y, 1, 1)), days(dt.date(y, 12, 31)) + 1, n_y)
    groups.append((rng, who, ids, mix, amount, paid, "PAID"))
    # Paid in Y-1, rejected, still open, and the ones to be rejected in January.
    n_prev = round(n_y * 0.9)
    who, ids = make(n_prev)
    mix = rng.choice(len(BENEFIT_MIX), n_prev, p=mix_p)
    amount = np.round(np.array([m[3] for m in BENEFIT_MIX])[mix] * rng.lognormal(-0.08, 0.4, n_prev), -3)
    paid = rng.integers(days(dt.date(y - 1, 1, 1)), days(dt.date(y - 1, 12, 31)) + 1, n_prev)
    groups.append((rng, who, ids, mix, amount.astype(np.int64), paid, "PAID"))
    n_rej = round(n_y * 0.04)
    who, ids = make(n_rej)
    mix = rng.choice(len(BENEFIT_MIX), n_rej, p=mix_p)
    sub = rng.integers(days(dt.date(y, 1, 1)), days(dt.date(y, 12, 20)), n_rej)
    groups.append((rng, who, ids, mix, np.zeros(n_rej, np.int64), sub, "REJECTED"))
    n_open = max(1, round(n_y * 0.03))
    who, ids = make(n_open)
    mix = rng.choice(len(BENEFIT_MIX), n_open, p=mix_p)
    sub = rng.integers(days(dt.date(y, 12, 1)), days(dt.date(y, 12, 31)) + 1, n_open)
    groups.append((rng, who, ids, mix, np.zeros(n_open, np.int64), sub, "SUBMITTED"))
    open_ids = ids
    who, ids = make(n_reject_later, january_rng)
    mix = np.zeros(n_reject_later, np.int64)
    paid = np.full(n_reject_later, days(dt.date(y, 12, 20)))
    groups.append((january_rng, who, ids, mix, np.full(n_reject_later, 12_000_000), paid, "PAID"))
    reject_later_ids = ids

    regions_codes = np.array([r.code for r in geo.regions])
    tables = []
    for draw, who, ids, mix, amount, when, status in groups:
        n = len(ids)
        prog = np.array([m[0] for m in BENEFIT_MIX])[mix]
        ben = np.array([m[1] for m in BENEFIT_MIX])[mix]
        lag = draw.integers(1, 30, n)
        submitted = when - lag if status == "PAID" else when
        e = pop.employer[who]
        base = {
            "claim_id": _claim_ids(y, ids),
            "kpj": kpj_of(who),
            "npp": pa.array(np.where(e >= 0, emp.npp[np.maximum(e, 0)], None), type=pa.string()),
            "region_code": _str(regions_codes[geo.kab[pop.region[who]]]),
            "program": _str(prog), "benefit_type": _str(ben),
            "submitted_date": to_date_array(submitted),
        }
        if status == "PAID":
            # Some paid claims also carry their first version, SUBMITTED, in the same file.
            first = draw.random(n) < 0.3
            v1 = {k: v.filter(pa.array(first)) for k, v in base.items()}
            tables.append(pa.table({**v1, "claim_version": pa.array(np.ones(first.sum(), np.int64)),
                                    "status": _str(np.full(first.sum(), "SUBMITTED")),
                                    "paid_date": pa.nulls(first.sum(), pa.date32()),
                                    "amount_idr": pa.nulls(first.sum(), pa.int64())}))
            tables.append(pa.table({**base, "claim_version": pa.array(np.full(n, 2, np.int64)),
                                    "status": _str(np.full(n, "PAID")), "paid_date": to_date_array(when),
                                    "amount_idr": pa.array(amount.astype(np.int64))}))
        else:
            tables.append(pa.table({**base, "claim_version": pa.array(np.full(n, 2 if status == "REJECTED" else 1)),
                                    "status": _str(np.full(n, status)),
                                    "paid_date": pa.nulls(n, pa.date32()),
                                    "amount_idr": pa.array(np.zeros(n, np.int64))}))
    order = ["claim_id", "claim_version", "kpj", "npp", "region_code", "program", "benefit_type",
             "submitted_date", "status", "paid_date", "amount_idr"]
    table = pa.concat_tables([t.select(order) for t in tables])
    reject_later = [{"claim_id": f"C{y}{i:08d}"} for i in reject_later_ids]
    return Claims(table, open_ids, reject_later, number)


@dataclass
class Bills:
    table: pa.Table  # the snapshot's view: payments after the snapshot date not yet known
    later: pa.Table  # rows delivered on the day the payment is posted (business_date column added)


def build_bills(rng, profile: Profile, geo: Geography, emp: Employers, snapshot: dt.date) -> Bills:
    y = profile.year
    billed_emp = np.flatnonzero(emp.registered > 0)
    months = [(y - 1 + (m // 12), m % 12 + 1) for m in range(24)]
    ne, nm = len(billed_emp), len(months)
    e = np.repeat(billed_emp, nm)
    mi = np.tile(np.arange(nm), ne)
    period = np.array([f"{yy:04d}-{mm:02d}" for yy, mm in months])[mi]
    due_first = np.array([days(dt.date(yy + (mm == 12), mm % 12 + 1, 1)) for yy, mm in months])[mi]
    wage = applicable_wage(geo, y, emp.region[e]) * 1.2
    workers = emp.registered[e]
    billed = np.round(workers * wage * CONTRIBUTION_RATE, -3).astype(np.int64)
    payer = emp.payer[e]
    u = rng.random(len(e))
    paid_day = due_first + rng.integers(0, 15, len(e))  # on time: by the 15th
    late = (payer == 1) & (u < 0.5)
    paid_day = np.where(late, due_first + rng.integers(15, 50, len(e)), paid_day)
    arrears_months = rng.integers(2, 9, len(e))
    unpaid = ((payer == 2) & (mi >= nm - arrears_months)) | ((payer == 3) & (u < 0.2)) | \
        (emp.closed[e] & (mi >= nm - 6))
    partial = unpaid & (rng.random(len(e)) < 0.3)
    paid_amount = np.where(unpaid, np.where(partial, billed // 2000 * 1000, 0), billed)
    known = ~unpaid & (paid_day <= days(snapshot))
    snap_paid = np.where(known, paid_amount, np.where(unpaid, paid_amount, 0))
    cols = {
        "npp": _str(emp.npp[e]), "period_month": _str(period),
        "workers_billed": pa.array(workers.astype(np.int64)), "billed_idr": pa.array(billed),
    }
    table = pa.table({**cols, "paid_idr": pa.array(snap_paid.astype(np.int64)),
                      "paid_date": to_date_array(paid_day, mask=~known)})
    posted = ~unpaid & ~known
    later = pa.table({k: v.filter(pa.array(posted)) for k, v in cols.items()} | {
        "paid_idr": pa.array(billed[posted]), "paid_date": to_date_array(paid_day[posted])})
    return Bills(table, later)


def reference_tables(rng, profile: Profile, geo: Geography, headcount: np.ndarray, drop_assessments: float) -> dict:
    y = profile.year
    regions = geo.regions
    codes = np.array([r.code for r in regions])
    is_prov = np.array([r.level == "PROVINSI" for r in regions])
    years = [y - 1, y]
    out = {"regions": pa.table({
        "region_code": _str(codes), "name": _str([r.name for r in regions]),
        "level": _str([r.level for r in regions]),
        "parent_code": pa.array([None if r.level == "PROVINSI" else r.code[:2] for r in regions], pa.string()),
    })}
    out["workforce"] = pa.concat_tables([pa.table({
        "region_code": _str(codes), "year": pa.array(np.full(len(codes), yy, np.int64)),
        "employed": pa.array(geo.employed[yy]), "informal_employed": pa.array(geo.informal[yy]),
    }) for yy in years])
    mw = []
    for yy in years:
        has = geo.ump[yy] > 0
        mw.append(pa.table({"region_code": _str(codes[has]), "year": pa.array(np.full(has.sum(), yy, np.int64)),
                            "minimum_wage_idr": pa.array(geo.ump[yy][has])}))
    out["minimum_wages"] = pa.concat_tables(mw)
    pa_rows = []
    for yy in years:
        n = len(codes)
        keep = ~(~is_prov & (rng.random(n) < drop_assessments)) if yy == y else np.ones(n, bool)
        emp = geo.employed[y].astype(float)
        pa_rows.append(pa.table({
            "region_code": _str(codes[keep]), "year": pa.array(np.full(keep.sum(), yy, np.int64)),
            "has_regulation": pa.array((rng.random(n) < 0.7).astype(np.int64)[keep]),
            "apbd_allocation_idr": pa.array((np.round(emp * rng.uniform(500, 8000, n), -6)).astype(np.int64)[keep]),
            "non_asn_headcount": pa.array(headcount[keep]),
            "innovation_score": pa.array(np.round(rng.uniform(30, 95, n), 1)[keep]),
        }))
    out["pemda_assessment"] = pa.concat_tables(pa_rows)
    return out


def nonasn_headcount(geo: Geography, year: int, rng: np.random.Generator) -> np.ndarray:
    """Non-civil-servant staff of each government: a share of its territory's employed."""
    is_prov = np.array([r.level == "PROVINSI" for r in geo.regions])
    share = np.where(is_prov, rng.uniform(0.003, 0.008, len(is_prov)), rng.uniform(0.01, 0.03, len(is_prov)))
    return np.round(geo.employed[year] * share).astype(np.int64)
