"""`paritrana generate`: realistic synthetic deliveries for a profile.

Layout written into the landing folder:
* one initial snapshot of every extract, business date Y-12-31;
* with `--days N`, N daily deltas (business dates Y+1-01-01 …) with churn, and the
  planted defects (malformed rows of every reason code, exact duplicates, a re-delivered
  file in `resent/`, a corrected file, a late file);
* `.generator.json`: the arguments, every file written, and every planted defect with
  the file, line and reason codes that ingestion must report.

Same arguments, same bytes.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from ingestion.deliveries import GENERATOR_MANIFEST

from ..methodology import require_award_year

from .facts import build_bills, build_claims, nonasn_headcount, reference_tables
from .geography import regions_for
from .population import FUND, SEG, Population, build_employers, build_geography, build_population, days
from .profiles import get_profile
from .tables import employer_rows, participant_rows
from .writer import JAKARTA, as_text, write_delivery

MANIFEST = GENERATOR_MANIFEST
CHUNK = 1_000_000
# Raised whenever the same arguments come to write other bytes, so that a cached landing
# (bench/) can tell it is another history. 2: day 1 holds every planted defect (0.3.24).
REVISION = 2


def _produced(business_date: dt.date, hours: int = 0) -> dt.datetime:
    return dt.datetime.combine(business_date + dt.timedelta(days=1), dt.time(1, 10), JAKARTA) + dt.timedelta(hours=hours)


def generate(landing: Path, profile: str, year: int | None = None, scale: float = 1.0, seed: int = 42,
             days_after: int = 0, progress: Callable[[str], None] = lambda _: None) -> dict:
    prof = get_profile(profile)
    if year is not None:  # histories start in 2005, deltas run into the next year
        require_award_year(year)
    if year is not None and year != prof.year:
        from dataclasses import replace
        prof = replace(prof, year=year, claims_target=None, ump={k: {year - 1: v[min(v)], year: v[max(v)]}
                                                                 for k, v in (prof.ump or {}).items()})
    if not 0 < scale < float("inf"):  # NaN fails this too
        raise ValueError(f"--scale must be a positive number (got {scale})")
    if days_after < 0:
        raise ValueError("--days must be 0 or more")
    if seed < 0:
        raise ValueError("--seed must be 0 or more")
    landing = Path(landing)
    if landing.exists() and not landing.is_dir():
        raise NotADirectoryError(f"landing {landing} is a file, not a folder")
    _remove_earlier_output(landing)
    landing.mkdir(parents=True, exist_ok=True)
    y = prof.year
    snapshot = dt.date(y, 12, 31)
    rng = np.random.default_rng(seed)
    geo = build_geography(rng, prof, regions_for(prof.name), scale)
    headcount = nonasn_headcount(geo, y, np.random.default_rng([seed, 2]))
    emp = build_employers(rng, prof, geo, scale)
    pop = build_population(rng, prof, geo, emp, scale, headcount)
    progress(f"{prof.name}: {len(geo.regions)} regions, {len(emp):,} employers, {len(pop):,} participants "
             f"({pop.active.sum():,} active)")
    claims = build_claims(rng, prof, geo, emp, pop, scale, days_after, np.random.default_rng([seed, 5]))
    bills = build_bills(rng, prof, geo, emp, snapshot)
    refs = reference_tables(rng, prof, geo, headcount, 0.02 if prof.name == "national" else 0.0)
    files = []
    produced = _produced(snapshot)
    for name, table in refs.items():
        files.append(write_delivery(landing, name, snapshot, table,
                                    "parquet" if name == "pemda_assessment" else "csv", produced))
    files.append(write_delivery(landing, "employers", snapshot, employer_rows(geo, emp, np.arange(len(emp))),
                                "csv", produced))
    progress(f"writing participants ({len(pop):,} people, in chunks of {CHUNK:,})")
    files.append(write_delivery(landing, "participants", snapshot,
                                _participant_snapshot(seed, prof, geo, emp, pop, snapshot),
                                prof.participants_format, produced))
    files.append(write_delivery(landing, "claims", snapshot, claims.table, "csv.gz", produced))
    files.append(write_delivery(landing, "contributions", snapshot, bills.table, "parquet", produced))
    defects = []
    if days_after:
        progress(f"writing {days_after} daily deltas")
        files += _deltas(landing, seed, prof, geo, emp, pop, claims, bills, snapshot, days_after, defects)
    manifest = {
        "profile": prof.name, "year": y, "scale": scale, "seed": seed, "days": days_after, "revision": REVISION,
        "snapshot_business_date": snapshot.isoformat(),
        "claims_target": prof.claims_target.__dict__ if prof.claims_target and scale == 1.0 else None,
        "files": files, "defects": defects,
        "note": "regency/city codes outside Bengkulu (17) are synthetic" if prof.name != "bengkulu-2024" else
        "real codes and names of Bengkulu province and its ten regencies/cities",
    }
    (landing / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _participant_snapshot(seed, prof, geo, emp, pop: Population, snapshot: dt.date):
    for start in range(0, len(pop), CHUNK):
        idx = np.arange(start, min(start + CHUNK, len(pop)))
        rng = np.random.default_rng([seed, 3, start])
        current = participant_rows(rng, prof, geo, emp, pop, idx, latest=snapshot)
        # A few people also have an earlier version: the as-of logic must pick the right one.
        hist = idx[rng.random(len(idx)) < 0.03]
        if len(hist):
            eff = np.array(current["effective_date"].cast(pa.int32()))[hist - start]
            earlier = eff - rng.integers(200, 2000, len(hist))
            old = participant_rows(rng, prof, geo, emp, pop, hist, effective=earlier,
                                   status_active=np.ones(len(hist), bool), wage_factor=0.9)
            yield old
        yield current


def _remove_earlier_output(landing: Path) -> None:
    """The files an earlier generation listed in the landing's manifest, and their control
    files, so that the landing holds exactly what this one lists (a `--days 3` run followed
    by `--days 1` left days 2 and 3 behind, unlisted). Files the generator did not write
    stay."""
    manifest = landing / MANIFEST
    if not manifest.exists():
        return
    earlier = json.loads(manifest.read_text())
    # the re-delivered copy in resent/ is listed among the defects only
    names = {e["file"] for e in earlier.get("files", []) + earlier.get("defects", []) if "file" in e}
    inside = landing.resolve()
    for name in names:
        for path in (landing / name, landing / (name + ".ctl.json")):
            if path.resolve().is_relative_to(inside):  # a manifest names files of its own folder only
                path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (landing / "resent").rmdir()  # when empty
    manifest.unlink()


def _deltas(landing, seed, prof, geo, emp, pop, claims, bills, snapshot, n_days, defects) -> list[dict]:
    files = []
    y = prof.year
    later_paid = np.array(bills.later["paid_date"].cast(pa.int32()))
    open_ids = list(claims.open_ids)
    known_claims = [claims.table]  # the snapshot's, then each day's submissions, to pay them later
    next_claim = claims.next_number
    new_person = len(pop)
    for k in range(1, n_days + 1):
        bd = snapshot + dt.timedelta(days=k)
        rng = np.random.default_rng([seed, 10, k])
        produced = _produced(bd)
        # Participants: status changes and wage updates of existing people, new registrations.
        touched = np.unique(rng.choice(len(pop), max(3, round(len(pop) * 0.003))))
        change_status = rng.random(len(touched)) < 0.4
        status = np.where(change_status, False, pop.active[touched])
        changed = participant_rows(rng, prof, geo, emp, pop, touched, effective=np.full(len(touched), days(bd)),
                                   status_active=status, wage_factor=1.05)
        n_new = max(2, round(len(pop) * 0.001))
        new = _new_people(rng, pop, n_new)
        new_rows = participant_rows(rng, prof, geo, emp, new, np.arange(len(new)),
                                    effective=np.full(n_new, days(bd)), status_active=np.ones(n_new, bool))
        new_rows = new_rows.set_column(0, "kpj", pa.array((10_000_000_000 + new_person + np.arange(n_new)).astype(str)))
        new_person += n_new
        part = pa.concat_tables([changed, new_rows])
        # Employers: reported headcounts revised.
        e_idx = np.unique(rng.choice(len(emp), max(2, round(len(emp) * 0.001))))
        employers = employer_rows(geo, emp, e_idx, reported=emp.reported[e_idx] + rng.integers(0, 3, len(e_idx)),
                                  effective=np.full(len(e_idx), days(bd)))
        # Claims: yesterday's open claims paid, new ones submitted, December payments reversed.
        to_pay, open_ids = open_ids[: max(1, len(open_ids) // 3)], open_ids[max(1, len(open_ids) // 3):]
        paid_rows = _claim_rows(pa.concat_tables(known_claims), [f"C{y}{i:08d}" for i in to_pay], version=2,
                                status="PAID", day=bd)
        n_sub = max(2, round(claims.table.num_rows / 365 * 0.5))
        ids = np.arange(next_claim, next_claim + n_sub)
        next_claim += n_sub
        open_ids += list(ids)
        submitted = _new_claims(rng, claims.table, ids, y, bd)
        known_claims.append(submitted)
        # Day 1 holds every planted defect, whatever the number of days: `--days N`'s files
        # are then those of `--days N+1` without its last day, byte for byte.
        first = k == 1
        parts = [paid_rows, submitted]
        if first and claims.reject_later:
            parts.append(_claim_rows(claims.table, [c["claim_id"] for c in claims.reject_later], version=3,
                                     status="REJECTED", day=None))
        claim_tab = pa.concat_tables(parts)
        # Contributions: payments posted on this business date.
        posted = bills.later.filter(pa.array(later_paid == days(bd)))
        contrib = posted if posted.num_rows else bills.later.slice(0, 0)
        if first:
            part, claim_tab, contrib = _plant_row_defects(part, claim_tab, contrib, bd, defects)
        files.append(write_delivery(landing, "participants", bd, part, "csv", produced))
        claims_file = write_delivery(landing, "claims", bd, claim_tab, "csv", produced)
        files.append(claims_file)
        # day 1's contributions are the late file: produced after day 2's files, they arrive
        # between day 2 and day 3
        files.append(write_delivery(landing, "contributions", bd, contrib, "csv",
                                    _produced(bd + dt.timedelta(days=1), 5) if first else produced))
        if not first:
            files.append(write_delivery(landing, "employers", bd, employers, "csv", produced))
            continue
        defects.append({"kind": "late_file", "file": files[-1]["file"],
                        "expect": "loaded; results independent of arrival order"})
        orig = write_delivery(landing, "employers", bd, employers, "csv", produced)
        fixed = employers.set_column(5, "reported_workforce",
                                     pa.array(np.array(employers["reported_workforce"]) + 1))
        corr = write_delivery(landing, "employers", bd, fixed, "csv.gz", _produced(bd, 6))
        files += [orig, corr]
        defects.append({"kind": "correction", "file": corr["file"], "corrects": orig["file"],
                        "expect": "replaces every row of the earlier file for this extract and date"})
        (landing / "resent").mkdir(exist_ok=True)
        for suffix in ("", ".ctl.json"):
            shutil.copyfile(landing / (claims_file["file"] + suffix), landing / "resent" / (claims_file["file"] + suffix))
        defects.append({"kind": "redelivery", "file": f"resent/{claims_file['file']}",
                        "same_as": claims_file["file"], "expect": "no-op, reported as a re-delivery"})
    return files


def _new_people(rng, pop: Population, n: int) -> Population:
    src = rng.choice(np.flatnonzero(pop.segment == SEG["BPU"]), n)
    return Population(pop.segment[src], pop.region[src], np.full(n, -1, np.int32), pop.occupation[src],
                      np.full(n, FUND["SELF"], np.int8), np.full(n, -1, np.int32), np.ones(n, bool))


def _claim_rows(table: pa.Table, ids: list[str], version: int, status: str, day: dt.date | None) -> pa.Table:
    import pyarrow.compute as pc
    rows = table.filter(pc.is_in(table["claim_id"], pa.array(ids)))
    rows = _latest(rows)
    n = rows.num_rows
    rows = rows.set_column(rows.column_names.index("claim_version"), "claim_version",
                           pa.array(np.full(n, version, np.int64)))
    rows = rows.set_column(rows.column_names.index("status"), "status", pa.array([status] * n, pa.string()))
    if status == "PAID":
        amounts = np.maximum(1_000_000, np.array(rows["amount_idr"].fill_null(0)))
        rows = rows.set_column(rows.column_names.index("paid_date"), "paid_date",
                               pa.array([day] * n, pa.date32()))
        rows = rows.set_column(rows.column_names.index("amount_idr"), "amount_idr", pa.array(amounts))
    else:
        rows = rows.set_column(rows.column_names.index("paid_date"), "paid_date", pa.nulls(n, pa.date32()))
    return rows


def _latest(rows: pa.Table) -> pa.Table:
    """One row per claim: its highest version."""
    import pyarrow.compute as pc
    order = pc.sort_indices(rows, [("claim_id", "ascending"), ("claim_version", "descending")])
    rows = rows.take(order)
    ids = np.array(rows["claim_id"])
    keep = np.ones(len(ids), bool)
    keep[1:] = ids[1:] != ids[:-1]
    return rows.filter(pa.array(keep))


def _new_claims(rng, table: pa.Table, ids: np.ndarray, y: int, bd: dt.date) -> pa.Table:
    src = table.take(rng.integers(0, table.num_rows, len(ids)))
    n = len(ids)
    src = src.set_column(0, "claim_id", pa.array([f"C{y}{i:08d}" for i in ids]))
    src = src.set_column(1, "claim_version", pa.array(np.ones(n, np.int64)))
    src = src.set_column(src.column_names.index("submitted_date"), "submitted_date", pa.array([bd] * n, pa.date32()))
    src = src.set_column(src.column_names.index("status"), "status", pa.array(["SUBMITTED"] * n))
    src = src.set_column(src.column_names.index("paid_date"), "paid_date", pa.nulls(n, pa.date32()))
    return src.set_column(src.column_names.index("amount_idr"), "amount_idr", pa.array(np.zeros(n, np.int64)))


def _append(table: pa.Table, rows: list[dict]) -> pa.Table:
    text = as_text(table)
    extra = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in text.column_names})
    return pa.concat_tables([text, extra])


def _plant_row_defects(part: pa.Table, claims: pa.Table, contrib: pa.Table, bd: dt.date, defects: list):
    """Malformed rows of every reason code and exact duplicates, appended to day 1's files."""
    good_p = {k: v[0] for k, v in as_text(part).slice(0, 1).to_pydict().items()}
    good_c = {k: v[0] for k, v in as_text(claims).slice(0, 1).to_pydict().items()}
    p_rows = [
        ({**good_p, "kpj": "19999999901", "birth_date": "1990-02-30"}, ["BAD_TYPE"]),
        ({**good_p, "kpj": "1234"}, ["BAD_FORMAT"]),
        ({**good_p, "kpj": "19999999902", "full_name": None}, ["MISSING_VALUE"]),
        ({**good_p, "kpj": "19999999903", "gender": "X"}, ["NOT_IN_SET"]),
        ({**good_p, "kpj": "19999999904", "status": "ACTIVE", "jkk": "0"}, ["INCONSISTENT"]),
        ({**good_p, "kpj": "19999999905", "effective_date": (bd + dt.timedelta(days=10)).isoformat()},
         ["OUT_OF_RANGE"]),
        (dict(good_p), ["DUPLICATE"]),
    ]
    bad_id = f"C{bd.year}99999999"[:13]
    c_rows = [
        ({**good_c, "claim_id": bad_id, "amount_idr": "100000"}, ["KEY_CONFLICT"]),
        ({**good_c, "claim_id": bad_id, "amount_idr": "200000"}, ["KEY_CONFLICT"]),
        ({**good_c, "claim_id": f"C{bd.year}99999998", "program": "JHT", "benefit_type": "DEATH_BENEFIT"},
         ["INCONSISTENT"]),
        ({**good_c, "claim_id": f"C{bd.year}99999997", "status": "PAID", "amount_idr": "500000",
          "paid_date": (bd - dt.timedelta(days=400)).isoformat(), "submitted_date": (bd - dt.timedelta(days=3)).isoformat()},
         ["OUT_OF_RANGE"]),
        ({**good_c, "claim_id": f"C{bd.year}99999996", "program": "JKN"}, ["NOT_IN_SET"]),
        ({**good_c, "claim_id": f"C{bd.year}99999995", "status": "PAID", "paid_date": None, "amount_idr": "500000"},
         ["MISSING_VALUE"]),
        (dict(good_c), ["DUPLICATE"]),
    ]
    out = []
    for table, rows, extract in ((part, p_rows, "participants"), (claims, c_rows, "claims")):
        base = table.num_rows
        for j, (row, codes) in enumerate(rows):
            kind = "exact_duplicate" if codes == ["DUPLICATE"] else "malformed_row"
            defects.append({"kind": kind, "file": f"{extract}__{bd}.csv", "line": base + 2 + j,
                            "reason_codes": [] if kind == "exact_duplicate" else codes})
        out.append(_append(table, [r for r, _ in rows]))
    return out[0], out[1], contrib
