"""`paritrana explain` (evaluators): every number it shows is the published one, and what
it shows a value computed from gives that value back."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import replace

from paritrana.explain import INDICATORS, _n, changes, explain, render
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
