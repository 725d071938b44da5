"""The input contract of extracts.md §3, as data.

Each extract is a list of columns (type, whether required, pattern, allowed set,
bounds) plus the conditional rules that span columns. `ingestion.rules` turns these
into one set-based SQL validation per file; nothing here touches data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Patterns of extracts.md §2 (full-match regular expressions).
KPJ = r"[0-9]{11}"
NIK = r"[0-9]{16}"
NPP = r"[A-Z]{2}[0-9]{6}"
PROVINCE = r"[0-9]{2}"
REGENCY = r"[0-9]{2}\.[0-9]{2}"
REGION = r"[0-9]{2}(\.[0-9]{2})?"
PERIOD_MONTH = r"[0-9]{4}-(0[1-9]|1[0-2])"
CLAIM_ID = r"C[0-9]{12}"

# Stands for the file's business date in bounds; replaced by a literal per file.
BUSINESS_DATE = "{business_date}"

NON_ASN_OCCUPATIONS = ("GURU_HONORER", "PERANGKAT_DESA", "RT_RW", "NON_ASN_LAIN")
OCCUPATIONS = (
    "KARYAWAN", "PEKERJA_KONSTRUKSI", "PEKERJA_MIGRAN", "PENGEMUDI_OJEK", "PETANI",
    "BURUH_TANI", "NELAYAN", "PEDAGANG", "PEKERJA_INFORMAL_LAIN", *NON_ASN_OCCUPATIONS,
)
SEGMENTS = ("PU", "BPU", "JAKON", "PMI")
FUNDINGS = ("SELF", "EMPLOYER", "APBD", "APBDES", "CSR")
PROGRAMS = ("JKK", "JKM", "JHT", "JP", "JKP")
BENEFITS_BY_PROGRAM = {
    "JKK": ("DEATH_BENEFIT", "FUNERAL", "SCHOLARSHIP", "MEDICAL", "DISABILITY"),
    "JKM": ("DEATH_BENEFIT", "FUNERAL", "SCHOLARSHIP"),
    "JHT": ("OLD_AGE_LUMP_SUM",),
    "JP": ("PENSION",),
    "JKP": ("JOB_LOSS_CASH",),
}
BENEFIT_TYPES = (
    "DEATH_BENEFIT", "FUNERAL", "SCHOLARSHIP", "MEDICAL", "DISABILITY",
    "OLD_AGE_LUMP_SUM", "PENSION", "JOB_LOSS_CASH",
)
CLAIM_STATUSES = ("SUBMITTED", "APPROVED", "PAID", "REJECTED")
SIZE_CLASSES = ("BESAR", "MENENGAH", "KECIL", "MIKRO")
SECTORS = tuple("ABCDEFGHIJKLMNOPQRSTU")
LEVELS = ("PROVINSI", "KABUPATEN", "KOTA")

# Kemendagri codes of Indonesia's 38 provinces: the first two NIK digits must be one.
PROVINCE_CODES = (
    "11", "12", "13", "14", "15", "16", "17", "18", "19", "21",
    "31", "32", "33", "34", "35", "36", "51", "52", "53",
    "61", "62", "63", "64", "65", "71", "72", "73", "74", "75", "76",
    "81", "82", "91", "92", "93", "94", "95", "96",
)

FILE_REASONS = (
    "UNKNOWN_EXTRACT", "CONTROL_INVALID", "UNSUPPORTED_SCHEMA", "CONTROL_MISMATCH",
    "UNREADABLE", "MISSING_COLUMN",
)
ROW_REASONS = (
    "MISSING_VALUE", "BAD_TYPE", "BAD_FORMAT", "NOT_IN_SET", "OUT_OF_RANGE",
    "INCONSISTENT", "KEY_CONFLICT",
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "text"  # text | date | int | flag | number
    required: bool = True  # value required on every row (conditional ones are rules)
    in_header: bool = True  # False only where extracts.md says required "no"
    pattern: str | None = None
    allowed: tuple[str, ...] | None = None
    low: str | None = None  # SQL literal bounds, inclusive unless *_exclusive
    high: str | None = None
    low_exclusive: bool = False
    personal: bool = False


@dataclass(frozen=True)
class Rule:
    """A row rule across columns. `broken` is SQL over the valid values `v.<col>`
    (NULL when the column is empty or itself invalid), true when the rule is broken."""

    code: str
    column: str
    broken: str


@dataclass(frozen=True)
class Extract:
    name: str
    kind: str  # delta | reference
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    key_unique_per_file: bool
    rules: tuple[Rule, ...] = field(default=())
    # The column that tells a key's rows in one file apart, when it may repeat there.
    versioned_by: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def header_required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.in_header)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def usually_distinct(self) -> tuple[str, ...]:
        """Columns whose values two rows of one file seldom share unless they are the
        same record: the key, and the version column where the key may repeat. Rows
        that do not share them cannot be exact duplicates (ingestion.loader)."""
        return self.key + ((self.versioned_by,) if self.versioned_by else ())


def _date(name: str, low: str | None = None, high: str | None = BUSINESS_DATE, **kw) -> Column:
    return Column(name, "date", low=low, high=high, **kw)


def _flag(name: str) -> Column:
    return Column(name, "flag")


def _money(name: str, **kw) -> Column:
    return Column(name, "int", low="0", **kw)


def _empty_unless(column: str, condition: str) -> Rule:
    return Rule("INCONSISTENT", column, f"raw.{column} is not null and not ({condition})")


def _required_when(column: str, condition: str) -> Rule:
    return Rule("MISSING_VALUE", column, f"raw.{column} is null and ({condition})")


PARTICIPANTS = Extract(
    name="participants",
    kind="delta",
    key=("kpj",),
    key_unique_per_file=False,
    versioned_by="effective_date",
    columns=(
        Column("kpj", pattern=KPJ),
        Column("nik", pattern=NIK, personal=True),
        Column("full_name", personal=True),
        _date("birth_date", low="DATE '1930-01-01'"),
        Column("gender", allowed=("L", "P")),
        Column("segment", allowed=SEGMENTS),
        Column("npp", required=False, pattern=NPP),
        Column("region_code", pattern=REGENCY),
        Column("occupation", allowed=OCCUPATIONS),
        Column("funding", allowed=FUNDINGS),
        Column("funder_code", required=False),
        _flag("jkk"), _flag("jkm"), _flag("jht"), _flag("jp"), _flag("jkp"),
        _money("monthly_wage_idr"),
        Column("status", allowed=("ACTIVE", "INACTIVE")),
        _date("effective_date", low="DATE '2000-01-01'"),
    ),
    rules=(
        _required_when("npp", "v.segment in ('PU', 'JAKON')"),
        _empty_unless("npp", "v.segment is null or v.segment in ('PU', 'JAKON')"),
        _required_when("funder_code", "v.funding in ('APBD', 'APBDES', 'CSR')"),
        _empty_unless("funder_code", "v.funding is null or v.funding in ('APBD', 'APBDES', 'CSR')"),
        Rule("BAD_FORMAT", "funder_code",
             f"raw.funder_code is not null and ("
             f"(v.funding = 'APBD' and not regexp_full_match(raw.funder_code, '{REGION}'))"
             f" or (v.funding = 'APBDES' and not regexp_full_match(raw.funder_code, '{REGENCY}'))"
             f" or (v.funding = 'CSR' and not regexp_full_match(raw.funder_code, '{NPP}')))"),
        Rule("INCONSISTENT", "jkk", "v.status = 'ACTIVE' and (v.jkk = 0 or v.jkm = 0)"),
        Rule("INCONSISTENT", "jp", "v.segment in ('BPU', 'JAKON') and v.jp = 1"),
        Rule("INCONSISTENT", "funding", "v.funding = 'EMPLOYER' and raw.npp is null"),
    ),
)

EMPLOYERS = Extract(
    name="employers",
    kind="delta",
    key=("npp",),
    key_unique_per_file=False,
    versioned_by="effective_date",
    columns=(
        Column("npp", pattern=NPP),
        Column("name"),
        Column("size_class", allowed=SIZE_CLASSES),
        Column("sector", allowed=SECTORS),
        Column("region_code", pattern=REGENCY),
        Column("reported_workforce", "int", low="0"),
        Column("status", allowed=("ACTIVE", "CLOSED")),
        _date("effective_date", low="DATE '2000-01-01'"),
    ),
)

_VALID_PAIRS = " or ".join(
    f"(v.program = '{p}' and v.benefit_type in ({', '.join(repr(b) for b in bs)}))"
    for p, bs in BENEFITS_BY_PROGRAM.items()
)

CLAIMS = Extract(
    name="claims",
    kind="delta",
    key=("claim_id", "claim_version"),
    key_unique_per_file=True,
    columns=(
        Column("claim_id", pattern=CLAIM_ID),
        Column("claim_version", "int", low="1"),
        Column("kpj", pattern=KPJ),
        Column("npp", required=False, in_header=False, pattern=NPP),
        Column("region_code", pattern=REGENCY),
        Column("program", allowed=PROGRAMS),
        Column("benefit_type", allowed=BENEFIT_TYPES),
        _date("submitted_date"),
        Column("status", allowed=CLAIM_STATUSES),
        _date("paid_date", required=False),
        _money("amount_idr", required=False),
    ),
    rules=(
        Rule("INCONSISTENT", "benefit_type",
             f"v.program is not null and v.benefit_type is not null and not ({_VALID_PAIRS})"),
        _required_when("paid_date", "v.status = 'PAID'"),
        _empty_unless("paid_date", "v.status is null or v.status = 'PAID'"),
        Rule("OUT_OF_RANGE", "paid_date", "v.paid_date < v.submitted_date"),
        _required_when("amount_idr", "v.status = 'PAID'"),
        Rule("OUT_OF_RANGE", "amount_idr", "v.status = 'PAID' and v.amount_idr = 0"),
    ),
)

CONTRIBUTIONS = Extract(
    name="contributions",
    kind="delta",
    key=("npp", "period_month"),
    key_unique_per_file=True,
    columns=(
        Column("npp", pattern=NPP),
        Column("period_month", pattern=PERIOD_MONTH),
        Column("workers_billed", "int", low="0"),
        _money("billed_idr"),
        _money("paid_idr"),
        _date("paid_date", required=False),
    ),
    rules=(
        _required_when("paid_date", "v.paid_idr >= v.billed_idr"),
        _empty_unless("paid_date", "v.paid_idr is null or v.billed_idr is null or v.paid_idr >= v.billed_idr"),
    ),
)

_YEAR = Column("year", "int", low="2015", high="2100")

REGIONS = Extract(
    name="regions",
    kind="reference",
    key=("region_code",),
    key_unique_per_file=True,
    columns=(
        Column("region_code", pattern=REGION),
        Column("name"),
        Column("level", allowed=LEVELS),
        Column("parent_code", required=False, pattern=PROVINCE),
    ),
    rules=(
        Rule("INCONSISTENT", "level",
             "v.level is not null and v.region_code is not null and "
             "((v.level = 'PROVINSI') <> (length(v.region_code) = 2))"),
        _required_when("parent_code", "v.level in ('KABUPATEN', 'KOTA')"),
        _empty_unless("parent_code", "v.level is null or v.level <> 'PROVINSI'"),
        Rule("INCONSISTENT", "parent_code",
             "v.parent_code is not null and v.region_code is not null "
             "and v.parent_code <> substr(v.region_code, 1, 2)"),
    ),
)

WORKFORCE = Extract(
    name="workforce",
    kind="reference",
    key=("region_code", "year"),
    key_unique_per_file=True,
    columns=(
        Column("region_code", pattern=REGION),
        _YEAR,
        Column("employed", "int", low="0", low_exclusive=True),
        Column("informal_employed", "int", low="0"),
    ),
    rules=(Rule("OUT_OF_RANGE", "informal_employed", "v.informal_employed > v.employed"),),
)

MINIMUM_WAGES = Extract(
    name="minimum_wages",
    kind="reference",
    key=("region_code", "year"),
    key_unique_per_file=True,
    columns=(
        Column("region_code", pattern=REGION),
        _YEAR,
        Column("minimum_wage_idr", "int", low="0", low_exclusive=True),
    ),
)

PEMDA_ASSESSMENT = Extract(
    name="pemda_assessment",
    kind="reference",
    key=("region_code", "year"),
    key_unique_per_file=True,
    columns=(
        Column("region_code", pattern=REGION),
        _YEAR,
        _flag("has_regulation"),
        _money("apbd_allocation_idr"),
        Column("non_asn_headcount", "int", low="0"),
        Column("innovation_score", "number", low="0", high="100"),
    ),
)

EXTRACTS: dict[str, Extract] = {
    e.name: e
    for e in (PARTICIPANTS, EMPLOYERS, CLAIMS, CONTRIBUTIONS, REGIONS, WORKFORCE,
              MINIMUM_WAGES, PEMDA_ASSESSMENT)
}
