"""Vectorised synthesis of the entities behind a profile: regions, employers,
participants, claims, contribution bills, and the reference extracts.

Everything is numpy over whole columns (no Python loop over people), seeded, so the
same arguments give the same arrays. Participants are kept as compact integer columns
(`Population`); their text form is produced chunk by chunk when written.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.contracts import FUNDINGS, NON_ASN_OCCUPATIONS, OCCUPATIONS, SEGMENTS, SIZE_CLASSES

from .geography import Region
from .profiles import Profile

FIRST = ["Agus", "Siti", "Budi", "Dewi", "Andi", "Rina", "Joko", "Sri", "Eko", "Wati", "Hendra", "Nur",
         "Rudi", "Yuni", "Bambang", "Lestari", "Dedi", "Fitri", "Imam", "Ratna", "Slamet", "Ayu", "Iwan", "Putri"]
LAST = ["Saputra", "Wijaya", "Lestari", "Hidayat", "Siregar", "Nasution", "Simanjuntak", "Pratama", "Santoso",
        "Kurniawan", "Rahmawati", "Setiawan", "Harahap", "Gunawan", "Susanto", "Wulandari", "Purba", "Utami"]
SEG = {s: i for i, s in enumerate(SEGMENTS)}
FUND = {f: i for i, f in enumerate(FUNDINGS)}
OCC = {o: i for i, o in enumerate(OCCUPATIONS)}
SIZE = {s: i for i, s in enumerate(SIZE_CLASSES)}
INFORMAL_OCC = ["PENGEMUDI_OJEK", "PETANI", "BURUH_TANI", "NELAYAN", "PEDAGANG", "PEKERJA_INFORMAL_LAIN"]
CONTRIBUTION_RATE = 0.1024  # JKK+JKM+JHT+JP, a typical total as share of wages


def days(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def to_date_array(day_numbers: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(day_numbers.astype("int32"), type=pa.int32(), mask=mask).cast(pa.date32())


@dataclass
class Geography:
    regions: list[Region]
    kab: np.ndarray  # indices of regencies/cities in `regions`
    prov_of_kab: np.ndarray  # province index (into regions) of each regency
    employed: dict[int, np.ndarray]  # year -> employed per region (aligned with regions)
    informal: dict[int, np.ndarray]
    ump: dict[int, np.ndarray]  # year -> minimum wage per region (UMP on provinces, UMK or 0 on regencies)


@dataclass
class Employers:
    npp: np.ndarray  # str
    region: np.ndarray  # regency index into Geography.kab
    size: np.ndarray  # index into SIZE_CLASSES
    sector: np.ndarray  # str letters
    registered: np.ndarray  # PU participants it registers
    reported: np.ndarray  # reported_workforce
    closed: np.ndarray  # bool
    effective: np.ndarray  # day numbers
    payer: np.ndarray  # 0 good, 1 late, 2 arrears, 3 sporadic

    def __len__(self) -> int:
        return len(self.npp)


@dataclass
class Population:
    """One row per participant; every column an integer array."""

    segment: np.ndarray
    region: np.ndarray  # regency index into Geography.kab
    employer: np.ndarray  # employer index or -1
    occupation: np.ndarray
    funding: np.ndarray
    funder: np.ndarray  # region index (into regions) for APBD/APBDES, employer index for CSR, -1 otherwise
    active: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.segment)


def build_geography(rng: np.random.Generator, profile: Profile, regions: list[Region], scale: float) -> Geography:
    year = profile.year
    codes = np.array([r.code for r in regions])
    is_prov = np.array([r.level == "PROVINSI" for r in regions])
    kab = np.flatnonzero(~is_prov)
    prov_index = {r.code: i for i, r in enumerate(regions) if r.level == "PROVINSI"}
    prov_of_kab = np.array([prov_index[codes[k][:2]] for k in kab])
    weights = rng.lognormal(0, 0.6, len(kab))
    employed = {}
    informal = {}
    total = profile.employed * scale
    for y, growth in ((year - 1, 0.985), (year, 1.0)):
        kab_emp = np.maximum(1000, np.round(weights / weights.sum() * total * growth)).astype(np.int64)
        if profile.name == "bengkulu-2024" and y == year and scale == 1.0:
            kab_emp[-1] += profile.employed - kab_emp.sum()  # BPS's exact provincial total
        share = np.clip(rng.normal(profile.informal_share, 0.06, len(kab)), 0.3, 0.9)
        kab_inf = np.round(kab_emp * share).astype(np.int64)
        emp = np.zeros(len(regions), np.int64)
        inf = np.zeros(len(regions), np.int64)
        emp[kab], inf[kab] = kab_emp, kab_inf
        np.add.at(emp, prov_of_kab, kab_emp)
        np.add.at(inf, prov_of_kab, kab_inf)
        employed[y], informal[y] = emp, inf
    ump = {}
    base = rng.integers(2_100_000, 3_600_000, len(regions)) // 1000 * 1000
    umk_factor = np.where(rng.random(len(regions)) < 0.45, rng.uniform(1.0, 1.25, len(regions)), 0.0)
    for y, f in ((year - 1, 0.965), (year, 1.0)):
        w = np.round(base * f, -3).astype(np.int64)
        for code, by_year in (profile.ump or {}).items():
            if code in prov_index and y in by_year:
                w[prov_index[code]] = by_year[y]
        prov_w = w[np.array([prov_index[c[:2]] for c in codes])]
        ump[y] = np.where(is_prov, prov_w, np.round(prov_w * umk_factor, -3)).astype(np.int64)
    return Geography(regions, kab, prov_of_kab, employed, informal, ump)


def build_employers(rng: np.random.Generator, profile: Profile, geo: Geography, scale: float) -> Employers:
    n = max(20, round(profile.employers * scale))
    y = profile.year
    kab_emp = geo.employed[y][geo.kab].astype(float)
    region = rng.choice(len(geo.kab), n, p=kab_emp / kab_emp.sum())
    other = (1 - profile.micro_share)
    size = rng.choice(4, n, p=[0.12 * other, 0.26 * other, 0.62 * other, profile.micro_share])
    sector = np.array(list("ABCDEFGHIJKLMNOPQRSTU"))[
        rng.choice(21, n, p=np.array([8, 1, 14, 1, 1, 7, 25, 5, 7, 2, 2, 1, 3, 3, 2, 4, 3, 1, 5, 2, 3]) / 100)]
    registered = np.select(
        [size == SIZE["BESAR"], size == SIZE["MENENGAH"], size == SIZE["KECIL"]],
        [np.round(rng.lognormal(6.6, 0.8, n)) + 100, rng.integers(20, 100, n), rng.integers(5, 20, n)],
        np.minimum(4, 1 + rng.poisson(0.6, n)),
    ).astype(np.int64)
    # Scale the large firms so wage earners land on the profile's PU total.
    pu_target = profile.active_participants * scale * profile.segment_shares[0] / 0.9
    big = size == SIZE["BESAR"]
    rest = registered[~big].sum()
    if big.any() and pu_target > rest:
        registered[big] = np.maximum(100, np.round(registered[big] * (pu_target - rest) / registered[big].sum()))
    under = np.where(rng.random(n) < 0.25, np.ceil(registered * rng.uniform(0.02, 0.3, n)), 0).astype(np.int64)
    reported = registered + under
    micro = size == SIZE["MIKRO"]
    reported = np.where(micro & (rng.random(n) < 0.1), 0, reported)
    closed = rng.random(n) < 0.02
    effective = rng.integers(days(dt.date(2005, 1, 1)), days(dt.date(y, 6, 30)), n)
    payer = rng.choice(4, n, p=[0.80, 0.12, 0.05, 0.03])
    payer = np.where(micro & (payer == 0) & (rng.random(n) < 0.15), 3, payer)
    npp = pc.binary_join_element_wise(
        pa.array(np.array(["BK", "JK", "MK", "SB", "TK", "UK"])[np.arange(1, n + 1) // 1_000_000]),
        pc.utf8_lpad(pa.array(np.arange(1, n + 1) % 1_000_000).cast(pa.string()), 6, "0"), "",
    ).to_numpy(zero_copy_only=False)
    return Employers(npp, region, size, sector, registered, reported, closed, effective, payer)


def build_population(rng: np.random.Generator, profile: Profile, geo: Geography, emp: Employers,
                     scale: float, nonasn_headcount: np.ndarray) -> Population:
    y = profile.year
    target = profile.active_participants * scale
    pu_s, bpu_s, jakon_s, pmi_s = profile.segment_shares
    parts = []  # (segment, region, employer, occupation, funding, funder)

    # PU: the registered workers of every employer.
    e = np.repeat(np.arange(len(emp)), emp.registered)
    parts.append((SEG["PU"], emp.region[e], e, OCC["KARYAWAN"], FUND["EMPLOYER"], np.full(len(e), -1)))
    # JAKON: construction workers of sector F employers.
    n_jakon = round(target * jakon_s / 0.9)
    f_emp = np.flatnonzero((emp.sector == "F") & (emp.size != SIZE["MIKRO"]))
    if len(f_emp) == 0:
        f_emp = np.arange(len(emp))
    e = rng.choice(f_emp, n_jakon)
    parts.append((SEG["JAKON"], emp.region[e], e, OCC["PEKERJA_KONSTRUKSI"], FUND["EMPLOYER"], np.full(n_jakon, -1)))
    # PMI: migrant workers, self-funded.
    n_pmi = round(target * pmi_s / 0.9)
    kab_inf = geo.informal[y][geo.kab].astype(float)
    r = rng.choice(len(geo.kab), n_pmi, p=kab_inf / kab_inf.sum())
    parts.append((SEG["PMI"], r, np.full(n_pmi, -1), OCC["PEKERJA_MIGRAN"], FUND["SELF"], np.full(n_pmi, -1)))

    # BPU: non-ASN staff covered by their government, vulnerable workers on APBD, CSR, self.
    n_bpu = round(target * bpu_s / 0.9)
    govs = np.arange(len(geo.regions))
    kab_of_region = {int(k): i for i, k in enumerate(geo.kab)}
    rate = rng.uniform(0.15, 1.1, len(govs))
    covered = np.round(nonasn_headcount * rate * 1.1).astype(np.int64)
    gov = np.repeat(govs, covered)
    # A regency's staff work in it; a province's staff anywhere in its territory.
    terr = np.array([kab_of_region.get(int(g), -1) for g in govs])
    prov_kabs = {int(p): np.flatnonzero(geo.prov_of_kab == p) for p in np.unique(geo.prov_of_kab)}
    region_n = terr[gov]
    is_p = region_n < 0
    if is_p.any():
        region_n[is_p] = _pick_in_territory(rng, gov[is_p], prov_kabs)
    occ = rng.choice([OCC[o] for o in NON_ASN_OCCUPATIONS], len(gov), p=[0.45, 0.25, 0.2, 0.1])
    village = (occ == OCC["PERANGKAT_DESA"]) & ~is_p & (rng.random(len(gov)) < 0.5)
    funding = np.where(village, FUND["APBDES"], FUND["APBD"])
    parts.append((SEG["BPU"], region_n, np.full(len(gov), -1), occ, funding, gov))
    # Vulnerable workers whose contributions a government pays (P4).
    apbd_rate = rng.uniform(0.0, 0.10, len(govs))
    inf_y = geo.informal[y]
    n_apbd = np.round(inf_y * apbd_rate * 0.35).astype(np.int64)
    gov2 = np.repeat(govs, n_apbd)
    r2 = terr[gov2]
    p2 = r2 < 0
    if p2.any():
        r2[p2] = _pick_in_territory(rng, gov2[p2], prov_kabs)
    occ2 = rng.choice([OCC[o] for o in INFORMAL_OCC], len(gov2))
    parts.append((SEG["BPU"], r2, np.full(len(gov2), -1), occ2, FUND["APBD"], gov2))
    # CSR: employers paying for informal workers around them (B5).
    n_csr = round(n_bpu * 0.02)
    big = np.flatnonzero(emp.size != SIZE["MIKRO"])
    e3 = rng.choice(big if len(big) else np.arange(len(emp)), n_csr)
    parts.append((SEG["BPU"], emp.region[e3], np.full(n_csr, -1), rng.choice([OCC[o] for o in INFORMAL_OCC], n_csr),
                  FUND["CSR"], e3))
    n_self = max(0, n_bpu - len(gov) - len(gov2) - n_csr)
    r4 = rng.choice(len(geo.kab), n_self, p=kab_inf / kab_inf.sum())
    parts.append((SEG["BPU"], r4, np.full(n_self, -1), rng.choice([OCC[o] for o in INFORMAL_OCC], n_self),
                  FUND["SELF"], np.full(n_self, -1)))

    def col(i, dtype):
        return np.concatenate([np.broadcast_to(np.asarray(p[i]), (len(p[1]),)).astype(dtype) for p in parts])

    n = sum(len(p[1]) for p in parts)
    return Population(col(0, np.int8), col(1, np.int32), col(2, np.int32), col(3, np.int8), col(4, np.int8),
                      col(5, np.int32), rng.random(n) < 0.9)


def _pick_in_territory(rng, provinces: np.ndarray, prov_kabs: dict) -> np.ndarray:
    out = np.empty(len(provinces), np.int64)
    for p in np.unique(provinces):
        m = provinces == p
        out[m] = rng.choice(prov_kabs[int(p)], m.sum())
    return out
