"""`paritrana changes`: what moved in a ranking between two publications, checked against
the two published CSV files compared here in Python."""
from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import paritrana


def _ranking(folder, category) -> dict[str, dict]:
    with (folder / f"rankings_{category}.csv").open(newline="") as f:
        return {r["entity_code"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def two(demo, tmp_path_factory):
    """The demo's publication (as of 2024-12-31), then a provisional one as of 2024-06-30:
    the same entities, other states and payments, so eligibility and ranks move."""
    work = demo.copy(tmp_path_factory.mktemp("changes") / "w")
    year = work.home_dir / "published" / "2024"
    before = (year / os.readlink(year / "latest")).resolve()
    again = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--as-of", "2024-06-30",
                      "--home", str(work.home_dir))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    after = (year / "latest").resolve()
    assert after != before
    return work, before, after


@pytest.mark.parametrize("category,group", [("umk", None), ("badan_usaha", "size_class")])
def test_changes_count_and_list_what_the_two_published_files_say(two, category, group):
    work, before, after = two
    shown = paritrana("changes", "--category", category, "--since", before.name, "--top", "3",
                      "--home", str(work.home_dir))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    a, b = _ranking(before, category), _ranking(after, category)
    both = a.keys() & b.keys()
    eligible = {code for code in both if a[code]["eligible"] == "true" and b[code]["eligible"] == "true"}
    ranked = {code for code in eligible if not group or a[code][group] == b[code][group]}
    rose = sorted(((int(a[c]["rank_national"]) - int(b[c]["rank_national"]), c) for c in ranked
                   if int(b[c]["rank_national"]) < int(a[c]["rank_national"])), key=lambda m: (-m[0], m[1]))
    fell = sorted(((int(b[c]["rank_national"]) - int(a[c]["rank_national"]), c) for c in ranked
                   if int(b[c]["rank_national"]) > int(a[c]["rank_national"])), key=lambda m: (-m[0], m[1]))
    lost = sorted((int(a[c]["rank_national"]), c) for c in both
                  if a[c]["eligible"] == "true" and b[c]["eligible"] == "false")
    became = [c for c in both if a[c]["eligible"] == "false" and b[c]["eligible"] == "true"]
    assert rose or fell or lost or became  # the as-of dates differ: something moves

    assert f"\n  entities: {len(both):,} in both, {len(b.keys() - a.keys()):,} new, {len(a.keys() - b.keys()):,} " \
           "gone\n" in out
    assert "version of the product" not in out  # both publications by this one
    count = lambda rows: sum(r["eligible"] == "true" for r in rows.values())  # noqa: E731
    assert f"\n  eligible: {count(a):,} → {count(b):,} ({len(became):,} became eligible, {len(lost):,} no longer" in out
    assert f"{len(ranked) - len(rose) - len(fell):,} of {len(ranked):,} ranked in both kept it, {len(rose):,} rose, " \
           f"{len(fell):,} fell\n" in out
    listed = {title: re.findall(r"^    (\S+) ", block, re.M) for title, block in
              re.findall(r"^  (rose most|fell most|no longer eligible)[^\n]*:\n((?:    [^\n]*\n)+)", out, re.M)}
    assert listed.get("rose most", []) == [c for _, c in rose[:3]]
    assert listed.get("fell most", []) == [c for _, c in fell[:3]]
    assert listed.get("no longer eligible", []) == [c for _, c in lost[:3]]
    for _, code in rose[:1]:  # a mover's line carries both ranks and totals as published
        line = next(line for line in out.splitlines() if line.startswith(f"    {code} "))
        assert line.endswith(f"rank {a[code]['rank_national']} → {b[code]['rank_national']} "
                             f"(+{int(a[code]['rank_national']) - int(b[code]['rank_national']):,}), "
                             f"total {a[code]['total_score']} → {b[code]['total_score']}")
    # the printed next step runs as printed, on the first mover
    hint = next(line for line in out.splitlines() if "number by number:" in line).split("number by number: ", 1)[1]
    code = (rose or fell)[0][1]
    explained = subprocess.run([sys.executable, "-m", "paritrana.cli", *shlex.split(hint.replace("CODE", code))[1:]],
                               capture_output=True, text=True, timeout=120)
    assert explained.returncode == 0 and f"since publication {before.name}" in explained.stdout, explained.stderr


def test_changes_refuse_what_they_cannot_compare(two):
    work, before, _ = two
    unknown = paritrana("changes", "--category", "umk", "--since", "nope", "--home", str(work.home_dir))
    assert unknown.returncode == 1 and "no publication 'nope' under" in unknown.stderr
    none = paritrana("changes", "--category", "umk", "--since", before.name, "--top", "0", "--home",
                     str(work.home_dir))
    assert none.returncode == 1 and "--top must be 1 or more (got 0)" in none.stderr
    other_year = paritrana("changes", "--category", "umk", "--since", before.name, "--year", "2023", "--home",
                           str(work.home_dir))
    assert other_year.returncode == 1 and "nothing published for 2023 under" in other_year.stderr


def test_changes_between_two_named_publications_need_no_year(two):
    """`--run` names the later publication wherever it is; the same one twice moves nothing."""
    work, before, after = two
    same = paritrana("changes", "--category", "pemda_kabkota", "--since", after.name, "--run", after.name,
                     "--home", str(work.home_dir))
    assert same.returncode == 0, same.stderr
    ranked = sum(r["eligible"] == "true" for r in _ranking(after, "pemda_kabkota").values())
    assert f"national rank: {ranked} of {ranked} ranked in both kept it, 0 rose, 0 fell" in same.stdout
    assert "\n  the first 10: unchanged\n" in same.stdout and "rose most" not in same.stdout


def test_the_command_lines_categories_are_the_published_rankings():
    from paritrana.cli import CATEGORIES
    from paritrana.publication import RANKINGS

    assert tuple(CATEGORIES) == tuple(RANKINGS)


def test_publications_of_two_versions_of_the_product_are_said_to_be(demo, tmp_path):
    """An evaluator comparing today's ranking with the one an award was announced on learns
    when another version of the product computed it: a number may have moved with a fix,
    not with the deliveries. Nothing else is said to have changed when nothing did."""
    import json

    work = demo.copy(tmp_path / "w")
    year = work.home_dir / "published" / "2024"
    before = (year / "latest").resolve()
    manifest = json.loads((before / "manifest.json").read_text())
    now = manifest["code_version"]
    manifest["code_version"] = "0.3.12"  # as the announced publication's manifest says
    (before / "manifest.json").write_text(json.dumps(manifest, indent=1))
    again = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    note = f"  computed by another version of the product: 0.3.12 → {now} (what each version changed: CHANGELOG.md)\n"
    shown = paritrana("changes", "--category", "umk", "--since", before.name, "--home", str(work.home_dir))
    assert shown.returncode == 0, shown.stderr
    assert note in shown.stdout and "\n  national rank: " in shown.stdout and " 0 rose, 0 fell\n" in shown.stdout
    explained = paritrana("explain", "--entity", "17", "--since", before.name, "--home", str(work.home_dir))
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.endswith(f"since publication {before.name} (year 2024, as of 2024-12-31):\n{note}"
                                     "  nothing changed\n")
