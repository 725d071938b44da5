"""The raw layer: one typed table per extract, the load ledger and the quarantine.

Raw tables keep every loaded row of every delivery with the business date and file it
came from; versioning (state as of a date, claim versions, reference snapshots) is
resolved downstream in dbt, which keeps loads append-or-replace and order-independent.
"""
from __future__ import annotations

from .contracts import EXTRACTS, Column, Extract
from .personal_data import DEFAULT_SCHEME, KEY_ENV, SCHEME_ENV, TOKEN_TYPE
from .rules import SQL_TYPES, quote_ident, sql_str

RAW = "raw"

LEDGER_DDL = f"""
create table if not exists {RAW}.load_ledger (
    load_id bigint primary key,
    run_id varchar not null,
    file_name varchar not null,
    extract varchar,
    business_date date,
    file_format varchar,
    file_size bigint,
    file_mtime_ns bigint,
    data_sha256 varchar,
    control_sha256 varchar,
    produced_at timestamp,
    control_row_count bigint,
    status varchar not null,      -- LOADED | SUPERSEDED | REJECTED | SKIPPED_REDELIVERY | SKIPPED_STALE
    reason_code varchar,          -- file-level reason for REJECTED and SKIPPED_*
    reason_detail varchar,
    rows_in_file bigint,
    rows_loaded bigint,
    rows_quarantined bigint,
    rows_duplicate bigint,
    extra_columns varchar[],
    superseded_by bigint,
    started_at timestamp not null,
    finished_at timestamp not null
)
"""

QUARANTINE_DDL = f"""
create table if not exists {RAW}.quarantine (
    load_id bigint not null,
    extract varchar not null,
    file_name varchar not null,
    business_date date not null,
    line bigint not null,
    reason_codes varchar[] not null,
    reason_details varchar[] not null,
    content json not null          -- the row as delivered, personal data masked
)
"""

LINEAGE_COLUMNS = (("_load_id", "bigint"), ("_business_date", "date"), ("_line", "bigint"))


def raw_type(c: Column) -> str:
    """The raw table's type for a column. A closed set of text values (gender, segment,
    status, ...) is a DuckDB ENUM: one byte a value where text costs a string each, which
    makes writing the national participants file about 7 % cheaper (docs/performance.md).
    Its values are sorted, so that it orders and compares exactly as its text does.
    Models read these columns as text (dbt macro `closed_set`)."""
    if c.type == "text" and c.allowed:
        return "ENUM(" + ", ".join(sql_str(v) for v in sorted(c.allowed)) + ")"
    return SQL_TYPES[c.type]


def loaded_columns(extract: Extract) -> list[tuple[str, str]]:
    """(name, SQL type) of the raw table: personal columns replaced as extracts.md §4 says."""
    cols: list[tuple[str, str]] = []
    for c in extract.columns:
        if c.name == "nik":
            cols += [("nik_token", TOKEN_TYPE), ("nik_consistent", "BOOLEAN")]
        elif c.personal:
            continue
        else:
            cols.append((c.name, raw_type(c)))
    return cols + list(LINEAGE_COLUMNS)


def declared_columns(con, extract: Extract) -> list[tuple[str, str]]:
    """(name, SQL type) of the raw table as the warehouse declares it, which a load writes
    in. Warehouses made before 0.3 hold closed sets as VARCHAR and keep doing so:
    both load and build alike (models read them as text), so no migration is needed."""
    declared = dict(con.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ?",
        [RAW, extract.name]).fetchall())
    return [(name, declared.get(name, sql_type)) for name, sql_type in loaded_columns(extract)]


class IncompatibleWarehouse(RuntimeError):
    pass


SETTINGS_DDL = f"""
create table if not exists {RAW}.warehouse_settings (
    name varchar primary key,
    value varchar not null
)
"""


def ensure_raw_schema(con, token_scheme: str = DEFAULT_SCHEME, key_check: str | None = None) -> None:
    con.execute(f"create schema if not exists {RAW}")
    _refuse_other_token_scheme(con, token_scheme)
    if key_check is not None:
        _refuse_other_key(con, key_check)
    con.execute(LEDGER_DDL)
    con.execute(QUARANTINE_DDL)
    for extract in EXTRACTS.values():
        cols = ", ".join(f"{quote_ident(n)} {t}" for n, t in loaded_columns(extract))
        con.execute(f"create table if not exists {RAW}.{extract.name} ({cols})")


def _refuse_other_key(con, check: str) -> None:
    """Tokens made with two keys never match either: a warehouse records which key made
    its tokens (`personal_data.key_check`) on first use and refuses another. The usual
    cause is a key that went missing: HOME/secrets/nik_token.key is created when absent, so
    a home restored without it, or a worker without $PARITRANA_NIK_KEY, would otherwise
    start a second population of tokens without a word. (Warehouses made before 0.3.4
    record the key of their first run since.)"""
    recorded = con.execute(f"select value from {RAW}.warehouse_settings where name = 'nik_key_check'").fetchone()
    if recorded is None:
        con.execute(f"insert into {RAW}.warehouse_settings values ('nik_key_check', ?)", [check])
    elif recorded[0] != check:
        raise IncompatibleWarehouse(
            f"the NIK token key is not this warehouse's (key check {check}, the warehouse's {recorded[0]}): tokens "
            f"of two keys never match, and people would be counted twice. The key is ${KEY_ENV} when set, else "
            "HOME/secrets/nik_token.key, which is created when missing: restore this warehouse's key there (or "
            f"in ${KEY_ENV}), or load the deliveries into a new HOME.")


def _refuse_other_token_scheme(con, scheme: str) -> None:
    """Tokens of two schemes never match, so people would be counted twice: a warehouse
    records its scheme on first use and refuses another, and one whose tokens are
    hexadecimal text (HMAC, before 0.2) is refused too."""
    row = con.execute(
        "select data_type from information_schema.columns "
        f"where table_schema = '{RAW}' and table_name = 'participants' and column_name = 'nik_token'").fetchone()
    if row and row[0] != TOKEN_TYPE:
        raise IncompatibleWarehouse(
            f"raw.participants.nik_token is {row[0]}: this warehouse holds tokens of an earlier scheme "
            f"({TOKEN_TYPE} expected). Rebuild it from the deliveries in a new HOME.")
    con.execute(SETTINGS_DDL)
    recorded = con.execute(f"select value from {RAW}.warehouse_settings where name = 'nik_token_scheme'").fetchone()
    if recorded is None:
        # Warehouses of 0.2 made before the scheme was recorded hold the default's tokens.
        had_tokens = row is not None and con.execute(f"select count(*) from {RAW}.participants").fetchone()[0] > 0
        recorded = (DEFAULT_SCHEME if had_tokens else scheme,)
        con.execute(f"insert into {RAW}.warehouse_settings values ('nik_token_scheme', ?)", list(recorded))
    if recorded[0] != scheme:
        raise IncompatibleWarehouse(
            f"this warehouse's NIK tokens are {recorded[0]}, and {SCHEME_ENV} asks for {scheme}: tokens of "
            f"two schemes never match. Use {recorded[0]} here, or build a new HOME for {scheme}.")
