"""Row validation as SQL: one pass over a staged file gives every row its reason codes.

The source holds every column as text (personal columns already replaced by their
tokens, see `personal_data`). Three projections build on each other:

* `p__<col>`: the value parsed to its type, NULL when empty or unparseable;
* `v__<col>`: the parsed value when it is also inside its bounds, else NULL;
* `_details`: the list of `CODE:column` strings for every rule the row breaks.

Conditional rules see only `v__` values, so a value that is itself invalid is
reported once, by its own code, and never also as INCONSISTENT (extracts.md §2).
"""
from __future__ import annotations

import re

from .contracts import PROVINCE_CODES, Column, Extract

DATE_SHAPE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
INT_SHAPE = r"-?[0-9]{1,18}"
NUMBER_SHAPE = r"-?[0-9]{1,15}(\.[0-9]+)?"

SQL_TYPES = {"text": "VARCHAR", "date": "DATE", "int": "BIGINT", "flag": "INTEGER", "number": "DOUBLE"}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def file_sql(path) -> str:
    """A file's path as SQL for DuckDB's readers, which take every path as a glob pattern:
    `*`, `?` and `[` are bracketed, so that the path names that file only (a landing named
    `land?x` was read together with its sibling `land$x`, and `land*` with all of them)."""
    return sql_str(re.sub(r"([*?\[])", r"[\1]", str(path)))


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# What a typed value must satisfy to be one that its text would have given: at most 18
# digits (INT_SHAPE), a four-digit year (DATE_SHAPE), a finite number of at most 15 whole
# digits (NUMBER_SHAPE; NaN and infinity have no such text).
_TYPED_PARSE = {
    "int": "case when {raw} between -999999999999999999 and 999999999999999999 then cast({raw} as bigint) end",
    "date": "case when {raw} between DATE '0001-01-01' and DATE '9999-12-31' then {raw} end",
    "number": "case when isfinite({raw}) and abs({raw}) < 1e15 then cast({raw} as double) end",
}


def _parse_expr(c: Column, typed: bool = False) -> str:
    raw = f"raw.{quote_ident(c.name)}"
    if typed:
        return _TYPED_PARSE[c.type].format(raw=raw)
    if c.personal:
        # Personal columns arrive as tokens; their format was judged before tokenising.
        return f"case when raw.{quote_ident(c.name + '__fmt')} then {raw} end" if c.pattern else raw
    if c.type == "text":
        if c.pattern:
            return f"case when regexp_full_match({raw}, {sql_str(c.pattern)}) then {raw} end"
        if c.allowed:
            return f"case when {raw} in ({', '.join(sql_str(a) for a in c.allowed)}) then {raw} end"
        return raw
    if c.type == "date":
        return f"case when regexp_full_match({raw}, '{DATE_SHAPE}') then try_cast({raw} as date) end"
    if c.type == "int":
        return f"case when regexp_full_match({raw}, '{INT_SHAPE}') then cast({raw} as bigint) end"
    if c.type == "flag":
        return f"case {raw} when '0' then 0 when '1' then 1 end"
    if c.type == "number":
        return f"case when regexp_full_match({raw}, '{NUMBER_SHAPE}') then cast({raw} as double) end"
    raise ValueError(f"unknown column type {c.type!r}")


def _bounds(c: Column, business_date: str) -> str | None:
    p = f"raw.{quote_ident('p__' + c.name)}"
    conds = []
    if c.low is not None:
        conds.append(f"{p} {'>' if c.low_exclusive else '>='} {_bound_literal(c.low, business_date)}")
    if c.high is not None:
        conds.append(f"{p} <= {_bound_literal(c.high, business_date)}")
    return " and ".join(conds) or None


def _bound_literal(bound: str, business_date: str) -> str:
    return bound.replace("{business_date}", f"DATE '{business_date}'") if "{" in bound else bound


def _format_code(c: Column) -> str:
    if c.type == "text":
        return "BAD_FORMAT" if c.pattern else "NOT_IN_SET"
    return "BAD_TYPE"


def _column_checks(c: Column) -> list[tuple[str, str]]:
    raw, p, v = (f"raw.{quote_ident(x)}" for x in (c.name, "p__" + c.name, "v__" + c.name))
    checks = []
    if c.required:
        checks.append(("MISSING_VALUE", f"{raw} is null"))
    if c.pattern or c.allowed or c.type != "text":
        checks.append((_format_code(c), f"{raw} is not null and {p} is null"))
    if c.low is not None or c.high is not None:
        checks.append(("OUT_OF_RANGE", f"{p} is not null and {v} is null"))
    return checks


def _rule_sql(expr: str) -> str:
    expr = re.sub(r"\bv\.(\w+)", lambda m: f"raw.{quote_ident('v__' + m.group(1))}", expr)
    return re.sub(r"\braw\.(\w+)", lambda m: f"raw.{quote_ident(m.group(1))}", expr)


def validation_sql(extract: Extract, source: str, business_date: str, present: set[str],
                   keep: tuple[str, ...] = (), typed: set[str] = frozenset()) -> str:
    """SELECT over every record of `source` (text columns, personal ones already
    tokenised): the `v__*` values, `_details`, `nik_consistent` when the file has a NIK,
    and the `keep` columns of `source` passed through unchanged.

    `typed` columns arrive in a type their contract type takes as is (a Parquet file's
    integers and dates): they are checked as their text would have been, without it.

    `present` is the set of contract columns in the file's header; an optional column
    that is absent is treated as empty on every row. Exact duplicates and KEY_CONFLICT
    need the whole file and are judged afterwards (ingestion.loader).
    """
    missing_optional = [c for c in extract.columns if c.name not in present]
    fill = "".join(f", cast(null as varchar) as {quote_ident(c.name)}" for c in missing_optional)
    parsed = ", ".join(f"{_parse_expr(c, c.name in typed)} as {quote_ident('p__' + c.name)}" for c in extract.columns)

    def valid(c: Column) -> str:
        p = f"raw.{quote_ident('p__' + c.name)}"
        b = _bounds(c, business_date)
        return f"case when {b} then {p} end" if b else p

    valids = ", ".join(f"{valid(c)} as {quote_ident('v__' + c.name)}" for c in extract.columns)

    checks = [(code, c.name, cond) for c in extract.columns for code, cond in _column_checks(c)]
    checks += [(r.code, r.column, _rule_sql(r.broken)) for r in extract.rules]
    items = ", ".join(f"case when {cond} then '{code}:{col}' end" for code, col, cond in checks)
    select = [f"raw.{quote_ident('v__' + c.name)}" for c in extract.columns]
    if "nik" in present:
        select.append(f"{_nik_consistent()} as nik_consistent")
    select += [f"raw.{quote_ident(k)}" for k in keep]
    # Building a list per row costs more than all the checks: only rows that break a rule get one.
    broken = " or ".join(f"({cond})" for _, _, cond in checks)
    select.append(f"case when coalesce({broken}, false) then list_filter([{items}], lambda x: x is not null) "
                  "else []::varchar[] end as _details")
    return f"""
with filled as (select *{fill} from {source}),
parsed as (select raw.*, {parsed} from filled raw),
valid as (select raw.*, {valids} from parsed raw)
select {", ".join(select)}
from valid raw
"""


def _nik_consistent() -> str:
    """extracts.md §4: the NIK's province, birth date and gender (day + 40 for women)
    agree with the row. Only the parts cut from the raw NIK before tokenising are used."""
    prov = ", ".join(sql_str(p) for p in PROVINCE_CODES)
    return ("coalesce(raw.nik__prov in (" + prov + ") "
            "and raw.nik__ddmmyy = (day(raw.v__birth_date) + case when raw.v__gender = 'P' then 40 else 0 end) * 10000 "
            "+ month(raw.v__birth_date) * 100 + year(raw.v__birth_date) % 100, false)")
