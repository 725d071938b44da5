"""Regions of each generator profile.

Province codes and names are Kemendagri's. Bengkulu's regencies/cities are real; the
other regency/city codes of the `national` and `demo` profiles are synthetic, and their
names say so.
"""
from __future__ import annotations

from dataclasses import dataclass

PROVINCES = {
    "11": "Aceh", "12": "Sumatera Utara", "13": "Sumatera Barat", "14": "Riau", "15": "Jambi",
    "16": "Sumatera Selatan", "17": "Bengkulu", "18": "Lampung", "19": "Kepulauan Bangka Belitung",
    "21": "Kepulauan Riau", "31": "DKI Jakarta", "32": "Jawa Barat", "33": "Jawa Tengah",
    "34": "DI Yogyakarta", "35": "Jawa Timur", "36": "Banten", "51": "Bali", "52": "Nusa Tenggara Barat",
    "53": "Nusa Tenggara Timur", "61": "Kalimantan Barat", "62": "Kalimantan Tengah",
    "63": "Kalimantan Selatan", "64": "Kalimantan Timur", "65": "Kalimantan Utara", "71": "Sulawesi Utara",
    "72": "Sulawesi Tengah", "73": "Sulawesi Selatan", "74": "Sulawesi Tenggara", "75": "Gorontalo",
    "76": "Sulawesi Barat", "81": "Maluku", "82": "Maluku Utara", "91": "Papua", "92": "Papua Barat",
    "93": "Papua Selatan", "94": "Papua Tengah", "95": "Papua Pegunungan", "96": "Papua Barat Daya",
}

BENGKULU = [
    ("17.01", "Kabupaten Bengkulu Selatan", "KABUPATEN"),
    ("17.02", "Kabupaten Rejang Lebong", "KABUPATEN"),
    ("17.03", "Kabupaten Bengkulu Utara", "KABUPATEN"),
    ("17.04", "Kabupaten Kaur", "KABUPATEN"),
    ("17.05", "Kabupaten Seluma", "KABUPATEN"),
    ("17.06", "Kabupaten Mukomuko", "KABUPATEN"),
    ("17.07", "Kabupaten Lebong", "KABUPATEN"),
    ("17.08", "Kabupaten Kepahiang", "KABUPATEN"),
    ("17.09", "Kabupaten Bengkulu Tengah", "KABUPATEN"),
    ("17.71", "Kota Bengkulu", "KOTA"),
]

# Employed population (BPS, Aug 2024, millions) by province: weights for the national profile.
EMPLOYED_MILLIONS = {
    "11": 2.5, "12": 7.6, "13": 2.8, "14": 3.2, "15": 1.8, "16": 4.4, "17": 1.1, "18": 4.6, "19": 0.8,
    "21": 1.1, "31": 5.1, "32": 24.6, "33": 19.6, "34": 2.3, "35": 22.6, "36": 5.9, "51": 2.6, "52": 2.8,
    "53": 2.8, "61": 2.7, "62": 1.4, "63": 2.2, "64": 1.8, "65": 0.3, "71": 1.2, "72": 1.5, "73": 4.3,
    "74": 1.3, "75": 0.6, "76": 0.7, "81": 0.8, "82": 0.6, "91": 0.6, "92": 0.3, "93": 0.3, "94": 0.6,
    "95": 0.7, "96": 0.3,
}
NATIONAL_REGENCIES = 514


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    level: str  # PROVINSI | KABUPATEN | KOTA

    @property
    def province(self) -> str:
        return self.code[:2]


def _synthetic(province: str, n: int) -> list[Region]:
    out = []
    for i in range(1, n + 1):
        city = i > n - max(1, n // 5)  # the last fifth are cities (codes 71+), as in the real scheme
        num = 70 + (i - (n - max(1, n // 5))) if city else i
        level = "KOTA" if city else "KABUPATEN"
        code = f"{province}.{num:02d}"
        out.append(Region(code, f"{level.title()} Sintetis {code} (synthetic)", level))
    return out


def regions_for(profile: str) -> list[Region]:
    """Provinces first, then their regencies/cities."""
    if profile == "bengkulu-2024":
        provs = ["17"]
        kab = {"17": [Region(*r) for r in BENGKULU]}
    elif profile == "demo":
        provs = ["17", "18", "19"]
        kab = {"17": [Region(*r) for r in BENGKULU[:4]] + [Region(*BENGKULU[-1])],
               "18": _synthetic("18", 4), "19": _synthetic("19", 3)}
    elif profile == "national":
        provs = list(PROVINCES)
        rest = NATIONAL_REGENCIES - len(BENGKULU)
        others = [p for p in provs if p != "17"]
        weights = {p: EMPLOYED_MILLIONS[p] ** 0.5 for p in others}
        wsum = sum(weights.values())
        counts = {p: max(3, round(rest * w / wsum)) for p, w in weights.items()}
        # Make the counts add up to exactly 514 regencies/cities.
        diff = rest - sum(counts.values())
        for p in sorted(others, key=lambda p: -weights[p])[: abs(diff)]:
            counts[p] += 1 if diff > 0 else -1
        kab = {p: _synthetic(p, counts[p]) for p in others}
        kab["17"] = [Region(*r) for r in BENGKULU]
    else:
        raise ValueError(f"unknown profile {profile!r}: choose demo, bengkulu-2024 or national")
    out = [Region(p, f"Provinsi {PROVINCES[p]}", "PROVINSI") for p in provs]
    for p in provs:
        out += kab[p]
    return out
