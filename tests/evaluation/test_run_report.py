"""report.html of a run: its content from hand-made results and history, and the page as a real headless
browser shows it (every embedded image decodes, the screenshot is not blank)."""

import re
from html.parser import HTMLParser

from browser import assert_renders, needs_chromium  # tests/browser.py

from splavu_ray.evaluation.report import markdown_table
from splavu_ray.evaluation.run_report import phase_spans, results_rows, time_rows, write_run_report
from splavu_ray.evaluation.suite import table_columns

DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def results() -> dict:
    """Shaped like evaluation/suite.py + distributed/run.py's results.json (the keys the report reads)."""
    per = {"gender_f": {"raw": 71.2, "anonymized": 58.6, "chance": 50.0},
           "scene_outdoor": {"raw": 100.0, "anonymized": 70.7, "chance": 48.0}}
    return {
        "timing_s": {"privacy": 7.2, "action": 8.2, "reid": 0.4},
        "privacy": {"cmap_raw": 75.86, "cmap_anonymized": 59.53, "cmap_chance": 51.08, "cmap_worst_raw": 77.22,
                    "cmap_worst_anonymized": 61.63, "cmap_worst_chance": 51.08, "per_attribute": per,
                    "attackers": {"mlp": {"raw": {"cmap": 75.86}, "anonymized": {"cmap": 59.53}}}},
        "action": {"top1_raw": 32.08, "top1_anonymized": 39.17, "top1_chance": 10.0, "clips_per_video": 2},
        "reid": {"top1_raw": 5.66, "top1_anonymized": 5.66, "top1_chance": 2.18, "probes": 30},
        "skipped": {"tad": "no temporal segments in the manifest"},
        "run": {"run_name": "demo <b>&", "adapter": "/out/best_adapter", "best_epoch": 3, "best_val_top1": 35.6,
                "backbone": {"name": "builtin:tiny-vjepa2", "embed_dim": 192}, "adapter_parameters": 1334592,
                "wall_time_s": 100.0, "phases_s": {"features": 10.0, "training": 60.0, "evaluation": 20.0}},
    }


def history() -> list[dict]:
    """The epoch loop's per-epoch records: a 'heads' phase, then 'joint' with the privacy losses."""
    out = []
    for e in range(1, 6):
        joint = e > 2
        h = {"epoch": e, "phase": "joint" if joint else "heads", "train_loss": 3.0 - 0.3 * e,
             "train_l_t": 2.3 - 0.2 * e, "train_l_ar": 2.3 - 0.2 * e, "val_top1": 20.0 + 4 * e,
             "val_twin_retrieval": 95.0 - 8 * e * joint, "val_nt_xent": 3.2 + 0.5 * e, "lr": 1e-4,
             "clips_per_s": 7000.0}
        if joint:
            h.update(train_l_b=4.0 + e, train_l_lc=1.0 / e)
        out.append(h)
    return out


class _Cells(HTMLParser):
    """Every table's rows (a list of cell texts per <tr>) and every <img>'s src."""

    def __init__(self):
        super().__init__()
        self.tables, self.srcs, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(doc: str) -> _Cells:
    p = _Cells()
    p.feed(doc)
    return p


def assert_self_contained(doc: str) -> None:
    """No URL of any kind outside the embedded PNGs: no http(s), no external src/href, no <link>."""
    rest = DATA_URI.sub("", doc)
    assert "http" not in rest and "//" not in rest
    assert "<link" not in rest and "href=" not in rest and "@import" not in rest
    assert re.findall(r'src="([^"]*)"', rest) == [""] * rest.count("<img")  # every src was a data URI


def test_report_holds_the_table_figures_and_curves(tmp_path):
    res, cols = results(), table_columns()
    path = write_run_report(res, history(), tmp_path, cols)
    assert path == tmp_path / "report.html"
    doc = path.read_text()
    assert_self_contained(doc)
    page = parse(doc)
    # privacy/utility, per-attribute AP, the loss panels, validation: all embedded PNGs
    assert len(page.srcs) == 4 and all(s.startswith("data:image/png;base64,iVBORw0KGgo") for s in page.srcs)
    # the results table holds results.md's cells, row for row
    md = [[c.strip() for c in line.strip()[1:-1].split(" | ")] for line in markdown_table(res, cols).splitlines()]
    assert page.tables[0] == [md[0], *md[2:]]
    assert page.tables[0][1][:3] == ["raw", "77.22", "75.86"] and page.tables[0][-1][0] == "chance"
    assert results_rows(res, cols) == (md[0], md[2:])
    # where the time went: the phases (share of the wall time), then the evaluation tasks (of the evaluation)
    times = page.tables[1]
    assert times[0] == ["part", "seconds", "share"]
    assert times[1] == ["features", "10.00", "10% of the run"] and times[2][2] == "60% of the run"
    assert ["other (start-up, export)", "10.00", "10% of the run"] in times
    assert times[-1] == ["evaluation: reid", "0.40", "2% of the evaluation"]
    # the run's details, text escaped
    details = dict(map(tuple, page.tables[2]))
    assert details["run_name"] == "demo <b>&" and "demo &lt;b&gt;&amp;" in doc and "<b>&" not in doc
    assert details["backbone.name"] == "builtin:tiny-vjepa2" and "tad (no temporal segments" in details["skipped tasks"]
    assert "phases_s" not in doc
    assert "training phases shaded (heads, joint)" in doc


def test_phases_losses_and_timings_from_the_records():
    assert phase_spans(history()) == [(0.5, 2.5, "heads"), (2.5, 5.5, "joint")]
    assert phase_spans([{"epoch": 1, "phase": "joint"}, {"epoch": 2, "phase": "joint"}]) == []  # one phase: no shading
    assert time_rows({"action": {}}) == []
    assert time_rows({"timing_s": {"privacy": 2.0, "action": 6.0}}) == [
        ["evaluation: privacy", 2.0, "25% of the evaluation"], ["evaluation: action", 6.0, "75% of the evaluation"]]


def test_evaluation_only_and_sparse_results(tmp_path):
    res = results()
    del res["run"], res["skipped"]
    # no history (python -m splavu_ray.evaluate): no training sections, the two result figures
    doc = write_run_report(res, [], tmp_path / "eval.html", table_columns()).read_text()
    assert len(parse(doc).srcs) == 2 and "evaluation-only run" in doc and "Where the time went" in doc
    assert "Run details" not in doc and "<title>splavu run report</title>" in doc
    # only an action number: the table, no figure (no privacy number to pair it with)
    doc = write_run_report({"action": {"top1_raw": 50.0, "top1_anonymized": 45.0}}, [], tmp_path / "a.html",
                           table_columns()).read_text()
    page = parse(doc)
    assert page.srcs == [] and page.tables[0][1] == ["raw", "50.00"] and "Where the time went" not in doc
    # nothing at all: a page that says so
    doc = write_run_report({}, None, tmp_path / "empty.html", table_columns()).read_text()
    assert "no raw/anonymized pair" in doc and "<img" not in doc
    assert_self_contained(doc)
    # a history without losses or validation numbers (e.g. a resumed record) still renders
    doc = write_run_report(res, [{"epoch": 1, "lr": 0.1}], tmp_path / "h.html", table_columns()).read_text()
    assert len(parse(doc).srcs) == 2


# ------------------------------------------------------------------------------------------------
# In a real browser
# ------------------------------------------------------------------------------------------------

@needs_chromium
def test_report_renders_in_a_headless_browser(tmp_path):
    path = write_run_report(results(), history(), tmp_path / "run", table_columns())
    assert assert_renders(path, tmp_path) == 4
