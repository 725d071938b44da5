"""`paritrana explain`: one entity's ranking, number by number, for an evaluator.

The published files give each indicator's value and score; the marts behind them also
keep what each value was computed from (methodology.md). This puts the two together for
one entity: each indicator as numerator ÷ denominator, its target, score and weight, the
total as the weighted mean, the ranks, and for an ineligible entity the facts behind its
reason. It reads a publication's own basis/ folder (the indicator marts as published), so
that any publication can be explained after the warehouse has moved on; for a publication
made before basis/ existed, the analysts' copy, which matches the latest publication.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ingestion.rules import sql_str

from .methodology import INDICATORS
from .publication import (BASIS, BASIS_MARTS, SCORE_TYPE, VALUE_TYPE, find_publication, latest, read_manifest,
                          versions_note)
from .settings import Paths


MARTS = dict(zip(("pemda", "badan_usaha", "umk"), BASIS_MARTS))
# The column whose value each category's entities are ranked within (none: all together).
RANKING_GROUP = {"pemda": "ranking_group", "badan_usaha": "size_class", "umk": None}


@dataclass
class Explanation:
    category: str
    entity: dict
    publication: str | None
    configuration: dict
    lines: list[str] = field(default_factory=list)
    indicators: list[dict] = field(default_factory=list)  # per indicator: name, value, score, weight, ...
    peers: tuple[int, int] = (0, 0)  # eligible entities ranked together: in the country, in the province
    code_version: str | None = None  # of the product that computed the publication (its manifest)


def _find(con, entity_code: str) -> tuple[str, dict] | None:
    """The entity's mart row, with each value, score and total also as published (rounded
    in SQL as the publication rounds: half away from zero, where Python rounds half to even)."""
    for category, mart in MARTS.items():
        rounded = [(f"{i.name}_value", 6, VALUE_TYPE) for i in INDICATORS[category]] + \
            [(f"{i.name}_score", 4, SCORE_TYPE) for i in INDICATORS[category]]
        shown = ", ".join(f"cast(round({c}, {places}) as {kind}) as shown__{c}" for c, places, kind in rounded)
        cur = con.execute(f"select *, {shown}, cast(round(total_score, 4) as {SCORE_TYPE}) as shown__total_score "
                          f"from marts.{mart} where entity_code = ?", [entity_code])
        row = cur.fetchone()
        if row:
            return category, dict(zip([d[0] for d in cur.description], row))
    return None


def explain(paths: Paths, entity_code: str, year: int | None = None, run_id: str | None = None) -> Explanation:
    """Explain from a publication's own basis: `run_id`, else the latest of `year`, else the
    latest of the year published last. A publication made before basis/ existed is
    explained from the analysts' copy when it is the latest, and refused otherwise."""
    if run_id:
        folder = find_publication(paths, run_id, year)
    else:
        year = _last_published_year(paths) if year is None else year
        folder = latest(paths, year)
        if folder is None:
            raise FileNotFoundError(f"nothing published for {year} under {paths.home / 'published' / str(year)}: "
                                    f"run paritrana run --year {year} to build and publish it, then explain")
    if (folder / BASIS).is_dir():
        return _from_basis(folder, entity_code)
    if run_id:
        raise ValueError(f"publication {run_id} keeps no basis/ folder (it was published before 0.3.9): its "
                         f"values and scores are in its rankings files (paritrana export --run {run_id}), what "
                         "they were computed from is not kept")
    return _from_analysts_copy(paths, entity_code, year)


def _last_published_year(paths: Paths) -> int:
    """The year whose latest publication was made last (the one the analysts' copy holds)."""
    made = []
    for link in (paths.home / "published").glob("*/latest"):
        if (link / "manifest.json").is_file() and link.parent.name.isdigit():
            made.append((read_manifest(link)["created_at"], int(link.parent.name)))
    if not made:
        raise FileNotFoundError(f"nothing published under {paths.home} yet: run paritrana run first")
    return max(made)[1]


def _from_basis(folder: Path, entity_code: str) -> Explanation:
    manifest = read_manifest(folder)
    con = duckdb.connect()  # in memory: the publication's own files, read where they are
    try:
        con.execute("create schema marts")
        for mart in BASIS_MARTS:
            con.execute(f"create view marts.{mart} as select * from read_parquet("
                        f"{sql_str(str(folder / BASIS / f'{mart}.parquet'))})")
        category, e, peers = _lookup(con, entity_code, f"publication {folder.name} of {manifest['year']}")
    finally:
        con.close()
    x = Explanation(category, e, folder.name, manifest["configuration"]["values"],
                    code_version=manifest.get("code_version"))
    _describe(x, peers)
    return x


def _from_analysts_copy(paths: Paths, entity_code: str, year: int) -> Explanation:
    """The latest publication of `year`, made before 0.3.9 kept basis/: the analysts' copy
    holds its marts while it is the last build published."""
    copy = paths.reader_copy
    again = f"run paritrana run --year {year} again to explain what it publishes"
    if not copy.exists():
        raise FileNotFoundError(f"the latest publication of {year} keeps no basis/ (it was made before 0.3.9), and "
                                f"there is no analysts' copy {copy} to explain it from: {again}")
    con = duckdb.connect(str(copy), read_only=True)
    try:
        category, e, peers = _lookup(con, entity_code, f"the latest build ({copy})")
    finally:
        con.close()
    if e["year"] != year:
        raise ValueError(f"the latest publication of {year} keeps no basis/ (it was made before 0.3.9), and the "
                         f"analysts' copy {copy} holds a build of {e['year']}: {again}")
    folder = latest(paths, e["year"])
    manifest = read_manifest(folder) if folder else None
    matches = manifest is not None and manifest["as_of"] == e["as_of"].isoformat() and \
        manifest["configuration"]["sha256"] == e["config_sha256"]
    if not matches:
        raise ValueError(f"the analysts' copy {copy} holds a build of year {e['year']} as of {e['as_of']} that is not "
                         f"the latest publication of {e['year']}: {again}")
    config = manifest["configuration"]["values"]
    x = Explanation(category, e, folder.name, config, code_version=manifest.get("code_version"))
    _describe(x, peers)
    return x


# Names listed when a part of a name fits several entities: enough to pick from.
CANDIDATES_SHOWN = 10


class AmbiguousEntity(ValueError):
    """A name, or part of one, that fits more than one entity: its candidates are listed."""


def _find_by_name(con, text: str, where: str) -> tuple[str, dict] | None:
    """An entity named `text` (any case), else the one entity whose name holds it. Evaluators
    are asked about "Kota Bengkulu" or "Rejang Lebong", not 17.71 or 17.02."""
    wanted = " ".join(text.split()).lower()
    if not wanted:
        return None
    for test in ("lower(entity_name) = ?", "contains(lower(entity_name), ?)"):
        fits = con.execute(" union all ".join(
            f"select entity_code, entity_name, '{category}' as category from marts.{mart} where {test}"
            for category, mart in MARTS.items()) + " order by entity_code", [wanted] * len(MARTS)).fetchall()
        if len(fits) == 1:
            return _find(con, fits[0][0])
        if fits:
            shown = "; ".join(f"{code} {name}" for code, name, _ in fits[:CANDIDATES_SHOWN])
            more = f"; and {len(fits) - CANDIDATES_SHOWN:,} more" if len(fits) > CANDIDATES_SHOWN else ""
            raise AmbiguousEntity(f"{len(fits):,} entities in {where} are named "
                                  f"{'' if test.startswith('lower') else 'with '}{text!r}: {shown}{more}. "
                                  "Give one's code, or more of its name")
    return None


def _lookup(con, entity_code: str, where: str) -> tuple[str, dict, tuple[int, int]]:
    """The entity's category, mart row and how many eligible entities its ranks are out of
    (in the country, and in the province)."""
    found = _find(con, entity_code.strip().upper()) or _find_by_name(con, entity_code, where)
    if found is None:
        raise ValueError(f"no province, regency/city, business or micro enterprise {entity_code!r} in {where}; "
                         "give a code (17, 17.71 or BK000123) or a name, or part of one")
    category, e = found
    group = RANKING_GROUP[category]
    peers = con.execute(
        f"select count(*) filter (where eligible), count(*) filter (where eligible and province_code = ?) "
        f"from marts.{MARTS[category]} where {f'{group} = ?' if group else 'true'}",
        [e["province_code"]] + ([e[group]] if group else [])).fetchone()
    return category, e, peers


def _describe(x: Explanation, peers: tuple[int, int]) -> None:
    x.peers = peers
    e, config = x.entity, x.configuration
    weights, targets = config["weights"][x.category], config["targets"][x.category]
    kind = {"pemda": {"PROVINSI": "province", "KABUPATEN": "regency", "KOTA": "city"}.get(e.get("level"), ""),
            "badan_usaha": f"business of size class {e.get('size_class')}", "umk": "micro enterprise"}[x.category]
    peers_named = {"pemda": "provinces" if e.get("level") == "PROVINSI" else "regencies and cities",
                   "badan_usaha": f"{e.get('size_class')} businesses", "umk": "micro enterprises"}[x.category]
    where = "" if e.get("level") == "PROVINSI" else f" in province {e['province_code']}"
    x.lines.append(f"{e['entity_name']} ({e['entity_code']}), {kind}{where}")
    x.lines.append(f"year {e['year']}, as of {e['as_of']}; publication {x.publication} "
                   f"(configuration sha256 {e['config_sha256'][:12]}…)")
    x.lines.append("")
    total_weight = sum(weights.values())
    weighted = 0.0
    for ind in INDICATORS[x.category]:
        value, score, weight, target = e[f"{ind.name}_value"], e[f"{ind.name}_score"], weights[ind.name], \
            targets[ind.name]
        numerator = e[ind.numerator] if ind.numerator else None
        denominator = (float(ind.denominator) if ind.denominator.isdigit() else e[ind.denominator]) \
            if ind.denominator else None
        x.indicators.append({"name": ind.name, "value": value, "score": score, "weight": weight, "target": target,
                             "numerator": numerator, "denominator": denominator,
                             "value_shown": "" if value is None else str(e[f"shown__{ind.name}_value"]),
                             "score_shown": "" if score is None else str(e[f"shown__{ind.name}_score"])})
        value_text, score_text = e[f"shown__{ind.name}_value"], e[f"shown__{ind.name}_score"]
        shown = "no value" if value is None else f"{value_text}"
        if value is not None and ind.denominator and denominator == 0:
            shown += f" ({ind.denominator} is 0: {ind.rule})"
        elif value is not None and ind.numerator and ind.denominator:
            shown += f" = {_n(numerator)} ÷ {_n(denominator)}"
        elif value is not None and ind.denominator:  # a mean: only its count is kept
            shown += f", over {_n(denominator)} participant{'' if denominator == 1 else 's'}"
        x.lines.append(f"{ind.name} ({ind.code}): {shown}")
        x.lines.append(f"    {ind.reads}" + (f" ({ind.rule})" if ind.rule else ""))
        if score is None:
            x.lines.append(f"    score: none (no value); weight {weight:g}")
        else:
            weighted += weight * score
            adds = f", adds {weight * score / total_weight:.4f} to the total" if e["eligible"] else ""
            x.lines.append(f"    score = 100 × min({value_text} ÷ {target:g}, 1) = {score_text}; "
                           f"weight {weight:g}{adds}")
    x.lines.append("")
    if e["eligible"]:
        x.lines.append(f"total = Σ weight × score ÷ Σ weight = {weighted:,.4f} ÷ {total_weight:g} = "
                       f"{e['shown__total_score']}")
        x.lines.append(f"rank {e['rank_national']} of {peers[0]} eligible {peers_named} in the country"
                       + (f"; {e['rank_province']} of {peers[1]} in province {e['province_code']}"
                          if e["rank_province"] is not None else ""))
        x.lines.append("ties: round(total, 6) descending, then the first indicator's score, then the code")
    else:
        x.lines.append(f"not eligible: {e['ineligible_reason']}, so no total and no rank")
        x.lines += [f"    {fact}" for fact in _reason_facts(x.category, e, config)]


def _reason_facts(category: str, e: dict, config: dict) -> list[str]:
    """The facts behind an ineligibility (methodology.md §3-5)."""
    reason = e["ineligible_reason"]
    if category == "pemda":
        facts = []
        if e["employed"] is None:
            facts.append(f"no workforce row for {e['year']}")
        elif not e["employed"] or not e["informal_employed"]:
            facts.append(f"workforce row: employed {_n(e['employed'])}, informal {_n(e['informal_employed'])} "
                         "(both must be above 0)")
        if not e["has_assessment"]:
            facts.append(f"no pemda_assessment row for {e['year']}")
        return facts
    facts = {
        "CLOSED": f"status on the as-of date: {e['status']}",
        "NO_WORKFORCE": "reported workforce is 0",
        "NO_BILLS": f"no contribution bill counts for {e['year']}",
        "ARREARS": f"{e['arrears_months']} months in arrears, more than {config['arrears_threshold']}",
        "NO_PARTICIPANTS": "no active participant of this employer",
        "MISSING_REFERENCE": f"{_n(e.get('participants_without_minimum_wage'))} participants have no applicable "
                             f"minimum wage for {e['year']}",
    }
    return [facts.get(reason, "")]


def _n(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(int(v))
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.6g}"


def render(x: Explanation) -> str:
    return "\n".join(x.lines)


def changes(now: Explanation, then: Explanation) -> list[str]:
    """What moved for one entity between two publications (`then` usually the earlier, such
    as the one an award was announced on), number by number: the configuration, each
    indicator that changed (value and its parts, score), eligibility, total and ranks."""
    e0, e1 = then.entity, now.entity
    lines = ["", f"since publication {then.publication} (year {e0['year']}, as of {e0['as_of']}):"]
    note = versions_note(then.code_version, now.code_version)
    if e0["config_sha256"] != e1["config_sha256"]:
        c0, c1 = then.configuration, now.configuration
        moved = [f"{kind[:-1]} of {name} {c0[kind][then.category][name]:g} → {c1[kind][now.category][name]:g}"
                 for kind in ("weights", "targets") if then.category == now.category
                 for name in c1[kind][now.category] if c0[kind][then.category].get(name) != c1[kind][now.category][name]]
        lines.append("  configuration: " + ("; ".join(moved) or "other settings changed (see both manifests)")
                     + f" (sha256 {e0['config_sha256'][:12]}… → {e1['config_sha256'][:12]}…)")
    if note:  # says what computed the numbers, not that one moved
        lines.append(f"  {note}")
    said = 2 + bool(note)  # the lines that say nothing moved: "nothing changed" if none follows
    if then.category != now.category:
        lines.append(f"  then ranked as {_kind(then)}, now as {_kind(now)}: indicators of another category")
    else:
        for spec, a, b in zip(INDICATORS[now.category], then.indicators, now.indicators):
            parts = ("value_shown", "score_shown", "numerator", "denominator")
            if all(a[k] == b[k] for k in parts):
                continue
            text = f"{a['value_shown'] or 'no value'} → {b['value_shown'] or 'no value'}"
            if spec.numerator and spec.denominator and (a["numerator"], a["denominator"]) != (
                    b["numerator"], b["denominator"]):
                text += (f" ({_n(a['numerator'])} ÷ {_n(a['denominator'])} → "
                         f"{_n(b['numerator'])} ÷ {_n(b['denominator'])})")
            text += f"; score {a['score_shown'] or 'none'} → {b['score_shown'] or 'none'}"
            lines.append(f"  {spec.name} ({spec.code}): {text}")
    if e0["eligible"] and e1["eligible"]:
        same = e0["shown__total_score"] == e1["shown__total_score"] and then.peers == now.peers and \
            (e0["rank_national"], e0["rank_province"]) == (e1["rank_national"], e1["rank_province"])
        if same and len(lines) == said:
            return lines + ["  nothing changed"]
        delta = e1["shown__total_score"] - e0["shown__total_score"]
        lines.append(f"  total: {e0['shown__total_score']} → {e1['shown__total_score']} ({delta:+})")
        lines.append(f"  rank: {e0['rank_national']} of {then.peers[0]} → {e1['rank_national']} of {now.peers[0]} "
                     "in the country" + (f"; {e0['rank_province']} of {then.peers[1]} → {e1['rank_province']} of "
                                          f"{now.peers[1]} in province {e1['province_code']}"
                                          if e1["rank_province"] is not None and e0["rank_province"] is not None
                                          else ""))
    elif e0["eligible"] != e1["eligible"]:
        was, is_now = (f"eligible, total {x.entity['shown__total_score']}, rank {x.entity['rank_national']}"
                       if x.entity["eligible"] else f"not eligible ({x.entity['ineligible_reason']})"
                       for x in (then, now))
        lines.append(f"  eligibility: {was} → {is_now}")
    elif e0["ineligible_reason"] != e1["ineligible_reason"]:
        lines.append(f"  not eligible in both: {e0['ineligible_reason']} → {e1['ineligible_reason']}")
    return lines if len(lines) > said else lines + ["  nothing changed"]


def _kind(x: Explanation) -> str:
    return {"pemda": "a region", "badan_usaha": f"a business ({x.entity.get('size_class')})",
            "umk": "a micro enterprise"}[x.category]


def versus(x: Explanation, y: Explanation) -> list[str]:
    """Why `x` ranks where it does against `y`, of the same publication: each indicator's
    value and score for both, and what its score difference adds to x's lead (weight ×
    difference ÷ Σ weight; these add up to the difference between the totals)."""
    a, b = x.entity, y.entity
    if x.category != y.category:
        raise ValueError(f"{a['entity_code']} is {_kind(x)} and {b['entity_code']} {_kind(y)}: their indicators "
                         "differ, so compare entities of one category")
    total_weight = sum(i["weight"] for i in x.indicators)
    lines = ["", f"against {y.lines[0]}:"]
    lead = 0.0
    for spec, i, j in zip(INDICATORS[x.category], x.indicators, y.indicators):
        text = (f"  {spec.name} ({spec.code}): {i['value_shown'] or 'no value'} against {j['value_shown'] or 'no value'}"
                f"; score {i['score_shown'] or 'none'} against {j['score_shown'] or 'none'}")
        if i["score"] is not None and j["score"] is not None:
            part = i["weight"] * (i["score"] - j["score"]) / total_weight
            lead += part
            text += f"; × {i['weight']:g} ÷ {total_weight:g} = {part:+.4f}"
        lines.append(text)
    unranked = [z for z in (x, y) if not z.entity["eligible"]]
    for z in unranked:
        lines.append(f"  {z.entity['entity_code']} is not eligible ({z.entity['ineligible_reason']}): no total, "
                     "no rank")
    if unranked:
        return lines
    code_a, code_b = a["entity_code"], b["entity_code"]
    gap = a["shown__total_score"] - b["shown__total_score"]
    ahead = f"{code_a} ahead by {gap}" if gap > 0 else f"{code_b} ahead by {-gap}" if gap < 0 else "equal"
    lines.append(f"  total: {a['shown__total_score']} against {b['shown__total_score']} ({ahead}; the indicators' "
                 f"parts above add up to {lead:+.4f} before the totals are rounded)")
    group = RANKING_GROUP[x.category]
    if group and a[group] != b[group]:
        lines.append(f"  ranked apart ({a[group]} and {b[group]}): rank {a['rank_national']} of {x.peers[0]} and "
                     f"{b['rank_national']} of {y.peers[0]} in the country; their totals compare, their ranks do not")
        return lines
    lines.append(f"  rank: {a['rank_national']} against {b['rank_national']} of {x.peers[0]} in the country"
                 + (f"; {a['rank_province']} against {b['rank_province']} of {x.peers[1]} in province "
                    f"{a['province_code']}" if a["province_code"] == b["province_code"]
                    and a["rank_province"] is not None else ""))
    if gap == 0:
        lines.append("  equal totals: ordered by round(total, 6), then the first indicator's score, then the code")
    return lines
