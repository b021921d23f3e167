"""The pull-request cost table: ``gpu_fleet.cost_diff`` and ``gpu-fleet cost-diff``.

Fixtures are plan JSONs in the shape ``gpu-fleet plan --format json`` gives them
(``stacks[].cost.minHourlyUsd`` / ``maxHourlyUsd`` with per-pool figures, a top-level ``fleet``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpu_fleet import cli, cost_diff

FIXTURES = Path(__file__).parent / "fixtures"
BASE = FIXTURES / "plan_base.json"
HEAD = FIXTURES / "plan_head.json"
OLD_BASE = FIXTURES / "plan_base_without_cost.json"


def _rows(markdown: str) -> dict[str, list[str]]:
    """Table rows by their first cell (markdown emphasis removed)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| stack"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("*")] = cells[1:]
    return rows


def _table(base: Path, head: Path, stacks=None) -> str:
    return cost_diff.render(cost_diff.diff(cost_diff.read_plan(base), cost_diff.read_plan(head), stacks))


def test_changed_unchanged_added_and_removed_stacks():
    rows = _rows(_table(BASE, HEAD))
    # Head order first, then what the change removes.
    assert list(rows) == ["us-east", "eu-west", "ap-south (new)", "global", "staging (removed)", "total"]
    assert rows["us-east"] == ["153.56", "196.64", "+43.08 (+28.1%)", "1,249.60", "1,249.60", "+0.00 (+0.0%)"]
    assert rows["eu-west"] == ["88.49", "88.49", "+0.00 (+0.0%)", "530.94", "530.94", "+0.00 (+0.0%)"]
    assert rows["ap-south (new)"] == ["n/a", "50.00", "n/a", "n/a", "400.00", "n/a"]
    assert rows["staging (removed)"] == ["10.00", "n/a", "n/a", "20.00", "n/a", "n/a"]
    # A zero before has no percentage.
    assert rows["global"] == ["0.00", "0.00", "+0.00", "0.00", "0.00", "+0.00"]


def test_totals_sum_each_side_over_the_stacks_it_has():
    rows = _rows(_table(BASE, HEAD))
    before_min = 153.56 + 88.49 + 10.0 + 0
    after_min = 196.64 + 88.49 + 50 + 0
    before_max = 1249.6 + 530.94 + 20.0
    after_max = 1249.6 + 530.94 + 400
    assert rows["total"][:2] == [f"{before_min:,.2f}", f"{after_min:,.2f}"]
    assert rows["total"][3:5] == [f"{before_max:,.2f}", f"{after_max:,.2f}"]
    delta = after_min - before_min
    assert rows["total"][2] == f"{delta:+,.2f} ({delta / before_min:+.1%})"


def test_a_base_without_cost_figures_says_na():
    text = _table(OLD_BASE, HEAD)
    rows = _rows(text)
    assert rows["us-east"] == ["n/a", "196.64", "n/a", "n/a", "1,249.60", "n/a"]
    assert rows["total"][0] == "n/a" and rows["total"][1] == f"{196.64 + 88.49 + 50:,.2f}"
    assert "no cost figures" in text


def test_an_empty_base_plan_is_unavailable_not_zero(tmp_path: Path):
    empty = tmp_path / "base.json"
    empty.write_text("")
    text = _table(empty, HEAD, ["us-east"])
    assert _rows(text) == {"us-east (new)": ["n/a", "196.64", "n/a", "n/a", "1,249.60", "n/a"]}
    assert "base branch's plan produced nothing" in text


def test_one_stack_only_has_no_total():
    text = _table(BASE, HEAD, ["eu-west"])
    assert list(_rows(text)) == ["eu-west"]
    assert text.startswith(cost_diff.HEADING)


def test_incomplete_cost_is_na(tmp_path: Path):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"stacks": [{"stack": "us-east", "cost": {"minHourlyUsd": 3}},
                                           {"stack": "eu-west", "cost": {"minHourlyUsd": True, "maxHourlyUsd": 2}}]}))
    assert cost_diff.stack_figures(cost_diff.read_plan(plan)) == {"us-east": None, "eu-west": None}


@pytest.mark.parametrize("content,message", [
    ("{not json", r"not JSON \(line 1\)"),
    ('{"resources": []}', "stacks: missing"),
])
def test_bad_plan_files_fail_in_one_line(tmp_path: Path, content: str, message: str):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(cost_diff.PlanFileError, match=message) as info:
        cost_diff.read_plan(bad)
    assert str(info.value).startswith(str(bad)) and "\n" not in str(info.value)


def test_cli_prints_the_table(capsys):
    assert cli.main(["cost-diff", str(BASE), str(HEAD), "--stack", "us-east"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(cost_diff.HEADING)
    assert _rows(out)["us-east"][2] == "+43.08 (+28.1%)"


def test_cli_missing_file_exits_2(tmp_path: Path, capsys):
    assert cli.main(["cost-diff", str(tmp_path / "nope.json"), str(HEAD)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.startswith(str(tmp_path / "nope.json")) and "cannot read" in err
