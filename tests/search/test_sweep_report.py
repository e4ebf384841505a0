"""A sweep's report.html from hand-made trial rows and summary: the front, the tables, the histories, and
the page as a real headless browser shows it."""

import re

import numpy as np
import pytest
from browser import assert_renders, needs_chromium  # tests/browser.py

from splavu_ray.search.pareto import pareto_mask
from splavu_ray.search.sweep_report import completed, front_mask, running_best, write_sweep_report

NAMES, DIRECTIONS = ["privacy_cmap", "action_top1"], ["min", "max"]
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
#         number  cMAP  top-1  lambda_b   on the front?
TRIALS = [(0, 60.0, 80.0, 0.1),  # front
          (1, 50.0, 70.0, 0.5),  # front
          (2, 55.0, 65.0, 0.3),  # dominated by 1
          (3, 70.0, 90.0, 0.01),  # front
          (4, 65.0, 75.0, 0.05)]  # dominated by 0


def rows(with_flags: bool = True) -> list[dict]:
    """Shaped like search/frontier.py: trial_rows (after write_outputs set "pareto"), plus a failed trial."""
    out = []
    for n, cmap, top1, lam in TRIALS:
        out.append({"number": n, "state": "COMPLETE", "privacy_cmap": cmap, "action_top1": top1,
                    "privacy_metric": "privacy_cmap", "param:loss.lambda_b": lam, "param:optim.lr": 1e-4,
                    "duration_s": 12.5, "tune_trial_id": f"t{n}", "trial_dir": f"/sweep/trials/t{n}",
                    "_raw": {"privacy_cmap": 77.0, "action_top1": 32.0}})
    out.append({"number": 5, "state": "FAIL", "privacy_cmap": None, "action_top1": None, "privacy_metric": None,
                "param:loss.lambda_b": 2.0, "param:optim.lr": 1e-3, "duration_s": 3.0, "tune_trial_id": "t5",
                "trial_dir": "/sweep/trials/t5", "_raw": {}})
    if with_flags:
        for r in out:
            r["pareto"] = r["number"] in (0, 1, 3)
    return out


SUMMARY = {"study": "demo-sweep", "storage": "sqlite:///sweep/optuna.db", "n_trials": 5, "n_failed": 1,
           "n_pareto": 3, "objectives": [{"name": "privacy_cmap", "direction": "min"},
                                         {"name": "action_top1", "direction": "max"}],
           "reference_point": {"privacy_cmap": 100.0, "action_top1": 0.0}, "hypervolume": 5100.0,
           "normalized_hypervolume": 0.51, "normalized_hypervolume_definition": "hypervolume / volume of the box",
           "raw_point": {"privacy_cmap": 77.0, "action_top1": 32.0}, "pareto_trials": []}


def highlighted(doc: str) -> list[str]:
    """The first cell (trial number) of every highlighted row."""
    return re.findall(r'<tr class="highlight"><td>([^<]*)</td>', doc)


def test_report_holds_the_front_the_trials_and_the_histories(tmp_path):
    path = write_sweep_report(SUMMARY, rows(), NAMES, DIRECTIONS, tmp_path)
    assert path == tmp_path / "report.html"
    doc = path.read_text()
    rest = DATA_URI.sub("", doc)
    # self-contained: the storage URL is shown as text, no other URL, no external resource
    assert "http" not in rest and "<link" not in rest and "href=" not in rest
    assert re.findall(r'src="([^"]*)"', rest) == ["", ""]  # the front and the histories, both embedded
    assert "<title>splavu sweep report: demo-sweep</title>" in doc
    assert "privacy_cmap (min), action_top1 (max)" in doc and "5100.00" in doc
    # the front's table: its trials in privacy order, without the run-folder columns
    front = doc.split("Trials on the front")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(\d+)</td>", front) == ["1", "0", "3"] and "trial_dir" not in front
    # every trial, failed included, with every column but those starting "_"; the front highlighted
    every = doc.split("All trials (6)")[1]
    assert highlighted(every) == ["0", "1", "3"]
    assert "param:loss.lambda_b" in every and "<td>0.0001</td>" in every and "<td>FAIL</td>" in every
    assert "_raw" not in doc and "/sweep/trials/t5" in every


def test_front_from_the_objectives_when_rows_carry_no_flags(tmp_path):
    done = completed(rows(with_flags=False), NAMES)
    assert [r["number"] for r in done] == [0, 1, 2, 3, 4]  # the failed trial has no point
    values = np.array([[r[n] for n in NAMES] for r in done])
    assert front_mask(done, NAMES, DIRECTIONS).tolist() == pareto_mask(values, DIRECTIONS).tolist() == \
        [True, True, False, True, False]
    doc = write_sweep_report(SUMMARY, rows(with_flags=False), NAMES, DIRECTIONS, tmp_path / "s.html").read_text()
    assert highlighted(doc.split("All trials")[1]) == ["0", "1", "3"]


def test_running_best_and_degenerate_sweeps(tmp_path):
    assert running_best([3.0, 1.0, 2.0, 0.5], "min") == [3.0, 1.0, 1.0, 0.5]
    assert running_best([3.0, 1.0, 5.0, 4.0], "max") == [3.0, 3.0, 5.0, 5.0]
    # no trial finished yet: a page that says so, no figure
    doc = write_sweep_report({"study": "s", "n_trials": 0}, rows()[-1:], NAMES, DIRECTIONS,
                             tmp_path / "none.html").read_text()
    assert "No completed trial yet" in doc and "<img" not in doc
    doc = write_sweep_report({}, [], NAMES, DIRECTIONS, tmp_path / "empty.html").read_text()
    assert "<img" not in doc and "All trials" not in doc
    # three objectives: one front panel per utility, one history panel per objective
    three = [{**r, "bias_gap": 10.0 - r["number"]} for r in rows()[:-1]]
    doc = write_sweep_report(SUMMARY, three, [*NAMES, "bias_gap"], [*DIRECTIONS, "min"], tmp_path / "3.html")
    assert doc.read_text().count("<img") == 2
    with pytest.raises(ValueError, match="2 metric names but 1 directions"):
        write_sweep_report(SUMMARY, rows(), NAMES, ["min"], tmp_path / "bad.html")


# ------------------------------------------------------------------------------------------------
# In a real browser (the same check as tests/evaluation/test_run_report.py)
# ------------------------------------------------------------------------------------------------

@needs_chromium
def test_report_renders_in_a_headless_browser(tmp_path):
    page = write_sweep_report(SUMMARY, rows(), NAMES, DIRECTIONS, tmp_path / "sweep")
    assert assert_renders(page, tmp_path) == 2  # the front and the objectives' histories
