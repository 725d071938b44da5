"""`paritrana explain` (evaluators): every number it shows is the published one, and what
it shows a value computed from gives that value back."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import replace

import pytest

from paritrana.explain import CANDIDATES_SHOWN, INDICATORS, AmbiguousEntity, _n, changes, explain, render, \
    versus
from paritrana.publication import BASIS_MARTS

from conftest import paritrana


def _published(bengkulu, ranking: str) -> list[dict]:
    folder = (bengkulu.home_dir / "published" / "2024" / "latest").resolve()
    with (folder / f"rankings_{ranking}.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_each_number_is_the_published_one_and_its_parts_give_it_back(bengkulu):
    checked = {"eligible": 0, "ineligible": 0, "ratios": 0}
    latest = (bengkulu.home_dir / "published" / "2024" / "latest").resolve().name
    for ranking, category in (("pemda_provinsi", "pemda"), ("pemda_kabkota", "pemda"),
                              ("badan_usaha", "badan_usaha"), ("umk", "umk")):
        rows = _published(bengkulu, ranking)
        sample = rows[:15] + [r for r in rows if r["eligible"] == "false"][:15]
        for row in sample:
            x = explain(bengkulu.paths, row["entity_code"], 2024)
            assert x.category == category and x.publication == latest
            weights = 0.0
            for ind, spec in zip(x.indicators, INDICATORS[category]):
                published_value, published_score = row[f"{ind['name']}_value"], row[f"{ind['name']}_score"]
                assert ind["value_shown"] == published_value and ind["score_shown"] == published_score, ind
                if ind["value_shown"]:
                    assert f"{ind['name']} ({spec.code}): {published_value}" in "\n".join(x.lines)
                if ind["value"] is not None and ind["numerator"] is not None and ind["denominator"]:
                    ratio = ind["numerator"] / ind["denominator"]
                    assert abs(ind["value"] - (min(ratio, 1) if "at most 1" in spec.rule else ratio)) < 1e-12
                    checked["ratios"] += 1
                if ind["score"] is not None:
                    weights += ind["weight"] * ind["score"]
            if row["eligible"] == "true":
                total = weights / sum(i["weight"] for i in x.indicators)
                assert abs(total - float(row["total_score"])) <= 0.00005 + 1e-12
                assert f"= {row['total_score']}\n" in "\n".join(x.lines) + "\n"
                assert f"rank {row['rank_national']} of " in "\n".join(x.lines)
                checked["eligible"] += 1
            else:
                assert f"not eligible: {row['ineligible_reason']}" in "\n".join(x.lines)
                checked["ineligible"] += 1
    assert checked["eligible"] >= 40 and checked["ineligible"] >= 20 and checked["ratios"] >= 200, checked


def test_explain_on_the_command_line(bengkulu):
    latest = (bengkulu.home_dir / "published" / "2024" / "latest").resolve().name
    out = paritrana("explain", "--entity", "17", "--year", "2024", "--home", str(bengkulu.home_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Provinsi Bengkulu (17), province\n")
    assert f"year 2024, as of 2024-12-31; publication {latest} " in out.stdout
    assert "coverage (P1): " in out.stdout and "total = Σ weight × score ÷ Σ weight = " in out.stdout
    npp = _published(bengkulu, "badan_usaha")[0]["entity_code"]  # typed in lower case, as people do
    lower = paritrana("explain", "--entity", npp.lower(), "--home", str(bengkulu.home_dir))
    assert lower.returncode == 0, lower.stderr
    assert lower.stdout.splitlines()[0].endswith(f"({npp}), business of size class BESAR in province 17")
    unknown = paritrana("explain", "--entity", "99.99", "--home", str(bengkulu.home_dir))
    assert unknown.returncode == 1 and "no province, regency/city, business or micro enterprise '99.99'" \
        in unknown.stderr
    other_year = paritrana("explain", "--entity", "17", "--year", "2023", "--home", str(bengkulu.home_dir))
    assert other_year.returncode == 1 and "nothing published for 2023 under " in other_year.stderr


def test_an_entity_is_found_by_its_name_or_part_of_it(bengkulu):
    """Evaluators are asked about "Kota Bengkulu", not 17.71: a whole name in any case and
    spacing, or the part of one that only it holds, finds the entity; a part that several
    hold lists them, by code, and finds none."""
    by_code = explain(bengkulu.paths, "17.71")
    name = by_code.entity["entity_name"]
    assert explain(bengkulu.paths, f"  {name.upper().replace(' ', '   ')} ").lines == by_code.lines
    assert explain(bengkulu.paths, "rejang leb").entity["entity_code"] == "17.02"
    rows = [r for ranking in ("pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk")
            for r in _published(bengkulu, ranking)]
    for part, fits in (("bengkulu", 5), ("koperasi", None)):
        holders = sorted((r["entity_code"], r["entity_name"]) for r in rows if part in r["entity_name"].lower())
        assert fits is None or len(holders) == fits
        with pytest.raises(AmbiguousEntity) as told:
            explain(bengkulu.paths, part)
        shown = "; ".join(f"{c} {n}" for c, n in holders[:CANDIDATES_SHOWN])
        assert f"{len(holders):,} entities in publication " in str(told.value) and f": {shown}" in str(told.value)
        assert (f"; and {len(holders) - CANDIDATES_SHOWN:,} more." in str(told.value)) == (
            len(holders) > CANDIDATES_SHOWN)
    out = paritrana("explain", "--entity", "Kabupaten", "--home", str(bengkulu.home_dir))
    assert out.returncode == 1 and "9 entities in publication " in out.stderr and "Give one's code" in out.stderr
    assert paritrana("explain", "--entity", "kota bengkulu", "--home", str(bengkulu.home_dir)).stdout == \
        render(by_code) + "\n"


def _parts(lines: list[str]) -> dict[str, float]:
    return {line.split(" (")[0].strip(): float(line.rsplit("= ", 1)[1]) for line in lines if " ÷ " in line
            and line.startswith("  ") and not line.startswith("  total")}


def test_versus_splits_the_gap_between_two_totals_by_indicator(bengkulu):
    """Why one regency ranks above another: each indicator's published value and score for
    both, and weight × score difference ÷ Σ weight, which add up to the gap between the
    totals; the ranks as published."""
    kabkota = [r for r in _published(bengkulu, "pemda_kabkota") if r["eligible"] == "true"]
    checked = 0
    for first, second in zip(kabkota, kabkota[::-1]):
        x, y = explain(bengkulu.paths, first["entity_code"]), explain(bengkulu.paths, second["entity_code"])
        lines = versus(x, y)
        assert lines[1] == f"against {second['entity_name']} ({second['entity_code']}), " \
            f"{'city' if second['entity_name'].startswith('Kota') else 'regency'} in province 17:"
        parts = _parts(lines)
        for spec in INDICATORS["pemda"]:
            line = next(li for li in lines if li.startswith(f"  {spec.name} ({spec.code}): "))
            assert f"{first[spec.name + '_value']} against {second[spec.name + '_value']}; score " \
                   f"{first[spec.name + '_score']} against {second[spec.name + '_score']}; " in line
            weight = x.configuration["weights"]["pemda"][spec.name]
            difference = float(first[spec.name + "_score"]) - float(second[spec.name + "_score"])
            assert abs(parts[spec.name] - weight * difference / 100) <= 0.0001, (line, difference)
        gap = x.entity["total_score"] - y.entity["total_score"]  # unrounded, as the marts keep them
        total = next(li for li in lines if li.startswith("  total: "))
        assert total.startswith(f"  total: {first['total_score']} against {second['total_score']} (")
        assert f"add up to {gap:+.4f} before" in total and abs(sum(parts.values()) - gap) <= 0.0004
        leader = first if float(first["total_score"]) > float(second["total_score"]) else second
        if first is not second:
            assert f"({leader['entity_code']} ahead by " in total
            assert int(leader["rank_national"]) < int((second if leader is first else first)["rank_national"])
        assert lines[-1] == f"  rank: {first['rank_national']} against {second['rank_national']} of " \
            f"{len(kabkota)} in the country; {first['rank_province']} against {second['rank_province']} of " \
            f"{len(kabkota)} in province 17"
        checked += 1
    assert checked == len(kabkota) >= 8

    businesses = _published(bengkulu, "badan_usaha")
    big = next(r for r in businesses if r["size_class"] == "BESAR" and r["eligible"] == "true")
    small = next(r for r in businesses if r["size_class"] == "KECIL" and r["eligible"] == "true")
    apart = versus(explain(bengkulu.paths, big["entity_code"]), explain(bengkulu.paths, small["entity_code"]))
    assert apart[-1].startswith(f"  ranked apart (BESAR and KECIL): rank {big['rank_national']} of ")
    unranked = next(r for r in businesses if r["eligible"] == "false")
    told = versus(explain(bengkulu.paths, big["entity_code"]), explain(bengkulu.paths, unranked["entity_code"]))
    assert told[-1] == f"  {unranked['entity_code']} is not eligible ({unranked['ineligible_reason']}): no total, " \
        "no rank" and not any(li.startswith("  total: ") for li in told)
    with pytest.raises(ValueError, match="compare entities of one category"):
        versus(explain(bengkulu.paths, "17.02"), explain(bengkulu.paths, big["entity_code"]))
    refused = paritrana("explain", "--entity", "17.02", "--versus", big["entity_code"], "--home",
                        str(bengkulu.home_dir))
    assert refused.returncode == 1 and refused.stdout == "" and "compare entities of one category" in refused.stderr
    out = paritrana("explain", "--entity", first_code := kabkota[0]["entity_code"], "--versus", "kota bengkulu",
                    "--home", str(bengkulu.home_dir))
    x = explain(bengkulu.paths, first_code)
    assert out.returncode == 0 and out.stdout == render(x) + "\n" + "\n".join(
        versus(x, explain(bengkulu.paths, "17.71"))) + "\n", out.stderr


def test_an_earlier_publication_is_explained_from_its_own_basis_after_the_warehouse_moved_on(demo, tmp_path):
    """The ranking an award was announced on must stay explainable after later nights
    rebuilt the warehouse: each publication keeps the indicator marts it came from (basis/,
    listed with their sha256 in the manifest), and `explain --run` reads them."""
    own = demo.copy(tmp_path / "own")
    root = own.home_dir / "published" / "2024"
    announced = (root / "latest").resolve()
    manifest = json.loads((announced / "manifest.json").read_text())
    assert [b["file"] for b in manifest["basis"]] == [f"basis/{m}.parquet" for m in BASIS_MARTS]
    for b in manifest["basis"]:
        assert hashlib.sha256((announced / b["file"]).read_bytes()).hexdigest() == b["sha256"]
    # a later night of the same year: a June build, so every number moves
    later = paritrana("run", "--landing", str(own.landing), "--year", "2024", "--as-of", "2024-06-30",
                      "--home", str(own.home_dir))
    assert later.returncode == 0, later.stderr[-3000:]
    assert (root / "latest").resolve() != announced

    with (announced / "rankings_pemda_kabkota.csv").open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["eligible"] == "true")
    then = explain(own.paths, row["entity_code"], run_id=announced.name)
    now = explain(own.paths, row["entity_code"], 2024)
    assert then.publication == announced.name and now.publication != announced.name
    assert [(i["value_shown"], i["score_shown"]) for i in then.indicators] == [
        (row[f"{i['name']}_value"], row[f"{i['name']}_score"]) for i in then.indicators]
    assert "year 2024, as of 2024-12-31; " in then.lines[1] and "as of 2024-06-30; " in now.lines[1]
    assert [i["numerator"] for i in then.indicators] != [i["numerator"] for i in now.indicators]
    assert f"= {row['total_score']}" in then.lines[-3] and f"rank {row['rank_national']} of " in then.lines[-2]

    out = paritrana("explain", "--entity", row["entity_code"], "--run", announced.name, "--home", str(own.home_dir))
    assert out.returncode == 0 and out.stdout == render(then) + "\n", out.stderr

    # what moved since the announcement, each changed indicator with its parts, by the published files
    with ((root / "latest").resolve() / "rankings_pemda_kabkota.csv").open(newline="") as f:
        row_now = next(r for r in csv.DictReader(f) if r["entity_code"] == row["entity_code"])
    moved = changes(now, then)
    assert moved[:2] == ["", f"since publication {announced.name} (year 2024, as of 2024-12-31):"]
    for spec, a, b in zip(INDICATORS["pemda"], then.indicators, now.indicators):
        line = [m for m in moved if m.startswith(f"  {spec.name} ({spec.code}): ")]
        v0, v1 = row[f"{spec.name}_value"], row_now[f"{spec.name}_value"]
        if (v0, a["numerator"], a["denominator"]) == (v1, b["numerator"], b["denominator"]):
            assert line == [], line
        else:
            assert line[0].startswith(f"  {spec.name} ({spec.code}): {v0} → {v1}")
            assert f"score {row[f'{spec.name}_score']} → {row_now[f'{spec.name}_score']}" in line[0]
            if spec.numerator and a["numerator"] != b["numerator"]:
                assert f"({_n(a['numerator'])} ÷ {_n(a['denominator'])} → " in line[0]
    assert sum(m.startswith("  ") and "): " in m for m in moved) >= 1  # a June build moves some indicator
    if row_now["eligible"] == "true":
        assert any(m.startswith(f"  total: {row['total_score']} → {row_now['total_score']} (") for m in moved)
        assert any(m.startswith(f"  rank: {row['rank_national']} of ") and f"→ {row_now['rank_national']} of " in m
                   for m in moved)
    assert changes(then, then)[2:] == ["  nothing changed"]
    # a weight changed by the configuration, and an entity that lost its eligibility
    weights = {**now.configuration["weights"]["pemda"], "coverage": 30}
    reweighted = replace(now, entity={**now.entity, "config_sha256": "f" * 64, "eligible": False,
                                      "ineligible_reason": "NO_WORKFORCE"},
                         configuration={**now.configuration, "weights": {**now.configuration["weights"],
                                                                         "pemda": weights}})
    told = changes(reweighted, then)
    assert told[2] == (f"  configuration: weight of coverage {then.configuration['weights']['pemda']['coverage']:g}"
                       f" → 30 (sha256 {then.entity['config_sha256'][:12]}… → ffffffffffff…)")
    assert told[-1] == (f"  eligibility: eligible, total {row['total_score']}, rank {row['rank_national']} → "
                         "not eligible (NO_WORKFORCE)")
    since = paritrana("explain", "--entity", row["entity_code"], "--since", announced.name,
                      "--home", str(own.home_dir))
    assert since.returncode == 0 and since.stdout == render(now) + "\n" + "\n".join(moved) + "\n", since.stderr
    missing = paritrana("explain", "--entity", "17", "--run", "20990101T000000Z-0000", "--home", str(own.home_dir))
    assert missing.returncode == 1 and "no publication '20990101T000000Z-0000' under " in missing.stderr
    # a publication made before basis/ existed says what it still has
    shutil.rmtree(announced / "basis")
    old = paritrana("explain", "--entity", "17", "--run", announced.name, "--home", str(own.home_dir))
    assert old.returncode == 1 and "keeps no basis/ folder (it was published before 0.3.9)" in old.stderr
    # and the latest such publication is explained from the analysts' copy, which holds its build
    shutil.rmtree((root / "latest").resolve() / "basis")
    assert explain(own.paths, row["entity_code"]).lines == now.lines
    (own.home_dir / "analytics.duckdb").unlink()
    gone = paritrana("explain", "--entity", row["entity_code"], "--home", str(own.home_dir))
    assert gone.returncode == 1 and "keeps no basis/ (it was made before 0.3.9), and there is no analysts' copy" \
        in gone.stderr and "run paritrana run --year 2024 again" in gone.stderr
