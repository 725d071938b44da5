"""Arrow tables of each extract, built column-wise from the synthetic population."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.contracts import BENEFITS_BY_PROGRAM, FUNDINGS, OCCUPATIONS, SEGMENTS, SIZE_CLASSES

from .population import (
    FIRST, FUND, LAST, SEG, SIZE, Employers, Geography, Population, days, to_date_array,
)
from .profiles import Profile

KPJ_BASE = 10_000_000_000


def _str(values) -> pa.Array:
    return pa.array(values, type=pa.string())


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pa.array(values.astype(np.int64)).cast(pa.string()), width, "0")


def kpj_of(index: np.ndarray) -> pa.Array:
    return pa.array((KPJ_BASE + index.astype(np.int64))).cast(pa.string())


def applicable_wage(geo: Geography, year: int, kab_index: np.ndarray) -> np.ndarray:
    umk = geo.ump[year][geo.kab[kab_index]]
    ump = geo.ump[year][geo.prov_of_kab[kab_index]]
    return np.where(umk > 0, umk, ump)


def participant_rows(rng, profile: Profile, geo: Geography, emp: Employers, pop: Population, idx: np.ndarray,
                     effective: np.ndarray | None = None, status_active: np.ndarray | None = None,
                     wage_factor: float = 1.0, latest: dt.date | None = None) -> pa.Table:
    """Rows for participants `idx` (indices into `pop`); text built vectorised."""
    n = len(idx)
    y = profile.year
    seg = pop.segment[idx]
    region = pop.region[idx]
    e = pop.employer[idx]
    fund = pop.funding[idx]
    funder = pop.funder[idx]
    # Traits that must stay the same on every row of one person derive from the index.
    h = (idx.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    female = (h % np.uint64(5)) < np.uint64(2)
    birth = days(dt.date(1960, 1, 1)) + (h % np.uint64(16_000)).astype(np.int64)
    bdate = year_month_day(birth)
    regions_codes = np.array([r.code for r in geo.regions])
    kab_codes = regions_codes[geo.kab[region]]
    prov = pc.utf8_slice_codeunits(_str(kab_codes), 0, 2)
    kabd = pc.utf8_slice_codeunits(_str(kab_codes), 3, 5)
    kec = _digits(1 + (h >> np.uint64(8)) % np.uint64(40), 2)
    dd = bdate[2] + np.where(female, 40, 0)
    inconsistent = (h % np.uint64(1000)) < np.uint64(3)  # 0.3% of NIKs disagree with the birth date
    dd = np.where(inconsistent, np.where(dd % 40 == 28, dd - 1, dd + 1), dd)
    nik = pc.binary_join_element_wise(prov, kabd, kec, _digits(dd, 2), _digits(bdate[1], 2),
                                      _digits(bdate[0] % 100, 2), _digits(idx % 10_000, 4), "")
    name = pc.binary_join_element_wise(_str(np.array(FIRST)[h % np.uint64(len(FIRST))]),
                                       _str(np.array(LAST)[(h >> np.uint64(5)) % np.uint64(len(LAST))]), " ")
    npp = np.where(e >= 0, emp.npp[np.maximum(e, 0)], None)
    funder_code = np.full(n, None, dtype=object)
    gov = (fund == FUND["APBD"]) | (fund == FUND["APBDES"])
    funder_code[gov] = regions_codes[funder[gov]]
    csr = fund == FUND["CSR"]
    funder_code[csr] = emp.npp[funder[csr]]
    active = pop.active[idx] if status_active is None else status_active
    u = rng.random((4, n))
    size = np.where(e >= 0, emp.size[np.maximum(e, 0)], SIZE["MIKRO"])
    jht = np.select([seg == SEG["PU"], seg == SEG["JAKON"], seg == SEG["BPU"]], [u[0] < 0.95, u[0] < 0.3, u[0] < 0.2],
                    u[0] < 0.5)
    jp_rate = np.select([size <= SIZE["MENENGAH"], size == SIZE["KECIL"]], [0.93, 0.3], 0.05)
    jp = (seg == SEG["PU"]) & (u[1] < jp_rate)
    jkp = (seg == SEG["PU"]) & (u[2] < 0.6)
    minimum = applicable_wage(geo, y, region)
    wage = np.where(
        (seg == SEG["PU"]) | (seg == SEG["JAKON"]),
        minimum * np.where(u[3] < 0.07, rng.uniform(0.7, 0.99, n), rng.lognormal(0.15, 0.2, n)),
        rng.uniform(800_000, 3_500_000, n),
    ) * wage_factor
    if effective is None:
        hi = days(latest or dt.date(y, 12, 31))
        effective = rng.integers(days(dt.date(2010, 1, 1)), hi + 1, n)
    one = np.ones(n, np.int64)
    return pa.table({
        "kpj": kpj_of(idx),
        "nik": nik,
        "full_name": name,
        "birth_date": to_date_array(birth),
        "gender": _str(np.where(female, "P", "L")),
        "segment": _str(np.array(SEGMENTS)[seg]),
        "npp": pa.array(npp, type=pa.string()),
        "region_code": _str(kab_codes),
        "occupation": _str(np.array(OCCUPATIONS)[pop.occupation[idx]]),
        "funding": _str(np.array(FUNDINGS)[fund]),
        "funder_code": pa.array(funder_code, type=pa.string()),
        "jkk": pa.array(one), "jkm": pa.array(one),
        "jht": pa.array(jht.astype(np.int64)), "jp": pa.array(jp.astype(np.int64)),
        "jkp": pa.array(jkp.astype(np.int64)),
        "monthly_wage_idr": pa.array((np.round(wage, -3)).astype(np.int64)),
        "status": _str(np.where(active, "ACTIVE", "INACTIVE")),
        "effective_date": to_date_array(np.asarray(effective)),
    })


def year_month_day(day_numbers: np.ndarray):
    d = (np.datetime64("1970-01-01", "D") + day_numbers.astype("timedelta64[D]"))
    y = d.astype("datetime64[Y]").astype(int) + 1970
    m = d.astype("datetime64[M]").astype(int) % 12 + 1
    day = (d - d.astype("datetime64[M]")).astype(int) + 1
    return y, m, day


def employer_rows(geo: Geography, emp: Employers, idx: np.ndarray, reported: np.ndarray | None = None,
                  effective: np.ndarray | None = None) -> pa.Table:
    codes = np.array([r.code for r in geo.regions])[geo.kab[emp.region[idx]]]
    names = pc.binary_join_element_wise(
        _str(np.array(["PT", "CV", "UD", "Koperasi"])[emp.size[idx] % 4]),
        _str(np.array(["Maju", "Sejahtera", "Makmur", "Abadi", "Jaya", "Sentosa"])[idx % 6]),
        _str(np.array(["Bersama", "Nusantara", "Raflesia", "Mandiri", "Lestari"])[(idx // 6) % 5]),
        _str(emp.npp[idx]), " ")
    return pa.table({
        "npp": _str(emp.npp[idx]),
        "name": names,
        "size_class": _str(np.array(SIZE_CLASSES)[emp.size[idx]]),
        "sector": _str(emp.sector[idx]),
        "region_code": _str(codes),
        "reported_workforce": pa.array((emp.reported[idx] if reported is None else reported).astype(np.int64)),
        "status": _str(np.where(emp.closed[idx], "CLOSED", "ACTIVE")),
        "effective_date": to_date_array(emp.effective[idx] if effective is None else effective),
    })


BENEFIT_MIX = [  # (program, benefit, share of claims, mean amount in rupiah)
    ("JHT", "OLD_AGE_LUMP_SUM", 0.60, 15_000_000),
    ("JKK", "MEDICAL", 0.12, 5_000_000),
    ("JKM", "DEATH_BENEFIT", 0.05, 42_000_000),
    ("JKM", "FUNERAL", 0.03, 10_000_000),
    ("JKK", "DEATH_BENEFIT", 0.005, 60_000_000),
    ("JKK", "DISABILITY", 0.01, 30_000_000),
    ("JP", "PENSION", 0.11, 3_500_000),
    ("JKP", "JOB_LOSS_CASH", 0.048, 3_000_000),
    ("JKM", "SCHOLARSHIP", 0.027, 3_900_000),
]
assert all(b in BENEFITS_BY_PROGRAM[p] for p, b, *_ in BENEFIT_MIX)


def exact_split(rng, n: int, total: int, mean_shape: np.ndarray | None = None) -> np.ndarray:
    """n positive amounts in whole thousands of rupiah that sum to exactly `total`."""
    units = total // 1000
    w = rng.lognormal(0, 0.5, n) if mean_shape is None else mean_shape
    a = np.maximum(1, np.floor(w / w.sum() * units)).astype(np.int64)
    diff = units - a.sum()
    order = np.argsort(-a)
    while diff != 0:  # at most a few passes: spreads the rounding remainder over the largest amounts
        step = 1 if diff > 0 else -1
        k = min(abs(diff), n)
        a[order[:k]] += step
        diff -= step * k
    return a * 1000
