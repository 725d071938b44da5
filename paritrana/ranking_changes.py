"""`paritrana changes`: what moved in one category's ranking between two publications.

Each night publishes anew; an evaluator asked "what changed since last week's ranking?"
needs the movers, not two files side by side. Both rankings are read from their
publications' own Parquet files (never the warehouse), joined on the entity code in
DuckDB: who entered or left, who became eligible or not (and why), who moved most in the
national rank, and whether the top of the ranking is the same. `explain --since` then
tells one entity's move number by number.
"""
from __future__ import annotations

import shlex

from .publication import (RANKINGS, NothingPublished, find_publication, latest, read_manifest,
                          versions_note)
from .settings import Paths

# The column of a rankings file whose value a rank is counted within (businesses are ranked
# per size class): a rank compares with an earlier one only in the same group. Not
# explain.RANKING_GROUP, which names the marts' columns: each pemda rankings file is one
# ranking group already.
GROUP = {"pemda_provinsi": None, "pemda_kabkota": None, "badan_usaha": "size_class", "umk": None}
TOP = 10


def changes(paths: Paths, category: str, since: str, year: int | None = None, run_id: str | None = None,
            top: int = TOP) -> list[str]:
    """The lines that say what moved in `category`'s ranking from publication `since` to
    publication `run_id` (of any year, or of `year`), else the latest of `year`, else the
    latest of `since`'s year."""
    import duckdb

    from ingestion.rules import sql_str

    if category not in RANKINGS:
        raise ValueError(f"unknown category {category!r}; one of {', '.join(RANKINGS)}")
    if top < 1:
        raise ValueError(f"--top must be 1 or more (got {top})")
    before = find_publication(paths, since)
    before_manifest = read_manifest(before)
    if run_id:
        after = find_publication(paths, run_id, year)
    else:
        year = year if year is not None else before_manifest["year"]
        after = latest(paths, year)
        if after is None:
            raise NothingPublished(f"nothing published for {year} under {paths.home / 'published' / str(year)}")
    after_manifest = read_manifest(after)
    group = GROUP[category]
    same_group = f"a.{group} = b.{group}" if group else "true"
    con = duckdb.connect()
    try:
        # materialised once: the counts, movers and tops below each read it
        con.execute(f"""create temp table joined as
            select coalesce(b.entity_code, a.entity_code) as entity_code,
                   coalesce(b.entity_name, a.entity_name) as entity_name,
                   a.entity_code is not null as was_there, b.entity_code is not null as is_there,
                   coalesce(a.eligible, false) as was_eligible, coalesce(b.eligible, false) as is_eligible,
                   b.ineligible_reason, a.rank_national as rank_before, b.rank_national as rank_after,
                   {f"a.{group} as {group}_before, b.{group} as {group}_after," if group else ""}
                   a.total_score as total_before, b.total_score as total_after,
                   a.rank_national is not null and b.rank_national is not null and {same_group} as comparable
            from read_parquet({sql_str(str(before / f"rankings_{category}.parquet"))}) as a
            full join read_parquet({sql_str(str(after / f"rankings_{category}.parquet"))}) as b
              on a.entity_code = b.entity_code""")
        both, new, gone, eligible_before, eligible_after, became, lost, moved, up, down = con.execute("""
            select count(*) filter (where was_there and is_there), count(*) filter (where not was_there),
                   count(*) filter (where not is_there), count(*) filter (where was_eligible),
                   count(*) filter (where is_eligible),
                   count(*) filter (where was_there and is_there and is_eligible and not was_eligible),
                   count(*) filter (where was_there and is_there and was_eligible and not is_eligible),
                   count(*) filter (where comparable), count(*) filter (where comparable and rank_after < rank_before),
                   count(*) filter (where comparable and rank_after > rank_before)
            from joined""").fetchone()
        reasons = con.execute("""
            select ineligible_reason, count(*) from joined
            where was_there and is_there and was_eligible and not is_eligible
            group by 1 order by 2 desc, 1""").fetchall()

        def movers(order: str, where: str) -> list[tuple]:
            return con.execute(f"""
                select entity_code, entity_name, rank_before, rank_after, total_before, total_after,
                       ineligible_reason
                from joined where {where} order by {order}, entity_code limit {int(top)}""").fetchall()

        risers = movers("rank_before - rank_after desc", "comparable and rank_after < rank_before")
        fallers = movers("rank_after - rank_before desc", "comparable and rank_after > rank_before")
        dropped = movers("rank_before", "was_there and is_there and was_eligible and not is_eligible")
        order = f"{group}_{{}}, " if group else ""
        top_before, top_after = ([code for code, in con.execute(
            f"select entity_code from joined where rank_{when} <= {int(top)} "
            f"order by {order.format(when)}rank_{when}, entity_code").fetchall()]
            for when in ("before", "after"))
    finally:
        con.close()

    lines = [f"rankings_{category}: publication {after.name} (year {after_manifest['year']}, as of "
             f"{after_manifest['as_of']}) since {before.name} (year {before_manifest['year']}, as of "
             f"{before_manifest['as_of']})"]
    if after_manifest["configuration"]["sha256"] != before_manifest["configuration"]["sha256"]:
        lines.append("  the methodology configuration differs (weights, targets or rules: see both manifests), "
                     "which moves every score")
    if note := versions_note(before_manifest.get("code_version"), after_manifest.get("code_version")):
        lines.append(f"  {note}")
    lines.append(f"  entities: {both:,} in both, {new:,} new, {gone:,} gone")
    lines.append(f"  eligible: {eligible_before:,} → {eligible_after:,} ({became:,} became eligible, {lost:,} no "
                 f"longer" + (": " + ", ".join(f"{reason or 'no reason'} {n:,}" for reason, n in reasons)
                              if reasons else "") + ")")
    group_note = f" within its {group}" if group else ""
    lines.append(f"  national rank{group_note}: {moved - up - down:,} of {moved:,} ranked in both kept it, "
                 f"{up:,} rose, {down:,} fell")
    lines.append(f"  the first {top}{f' of each {group}' if group else ''}: " + ("unchanged" if top_after == top_before else
                                            "now " + ", ".join(top_after) + f" (before: {', '.join(top_before)})"))
    for title, rows in ((f"rose most (first {top})", risers), (f"fell most (first {top})", fallers),
                        (f"no longer eligible (first {top}, by their earlier rank)", dropped)):
        if rows:
            lines.append(f"  {title}:")
            lines += [_mover(row) for row in rows]
    lines.append(f"  one entity, number by number: paritrana explain --entity CODE --run {after.name} "
                 f"--since {before.name} --home {shlex.quote(str(paths.home))}")
    return lines


def _mover(row: tuple) -> str:
    code, name, rank_before, rank_after, total_before, total_after, reason = row
    if rank_after is None:  # no longer ranked
        return f"    {code:<10} {name:<40.40} rank {rank_before} → not ranked ({reason}), total {total_before}"
    return (f"    {code:<10} {name:<40.40} rank {rank_before} → {rank_after} ({rank_before - rank_after:+,}), "
            f"total {total_before} → {total_after}")
