"""`python benchmarks/comparison.py` on tiny built-in data, as the docs run it: raw + SPLAVU and the blacken
row each one evaluate run (the blacken store extracted with Ray Data), the table with intervals and the
chance row written into the doc; a rerun reuses the finished rows; the learned row is left out with a note."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from splavu_ray.models.adapter import AnonymizingAdapter, save_adapter

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_comparison_command_writes_the_doc_and_resumes(tmp_path):
    tiny = ["data.synthetic.videos_per_split={pretrain: 1, train: 24, val: 4, test: 12}",
            "data.synthetic.privacy_images={train: 24, test: 12}", "data.synthetic.untrimmed_videos={train: 1, test: 1}",
            "data.num_static_frames=2", "data.num_eval_clips=2", "data.decode_workers=1",
            f"data.cache_dir={tmp_path / 'cache'}", "eval.tasks=[privacy,action,reconstruction]",
            "eval.privacy.attacker_epochs=4", "eval.privacy.attackers=[mlp]", "eval.inversion.epochs=2",
            "eval.inversion.width=16", "eval.inversion.grid_images=2", "eval.bootstrap.resamples=50"]
    adapter = save_adapter(AnonymizingAdapter(192, layers=1, heads=4), tmp_path / "adapter")
    doc, out = tmp_path / "doc.md", tmp_path / "out"
    cmd = [sys.executable, "benchmarks/comparison.py", "--adapter", str(adapter), "--out", str(out), "--doc", str(doc),
           "--baselines", "blacken", *tiny]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    text = doc.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in table[2:]] == ["raw", "blacken", "SPLAVU (f_A)", "chance"]
    assert table[0].split("|")[2].strip().startswith("privacy cMAP, worst attacker")
    assert table[0].split("|")[4].strip().startswith("inversion PSNR dB")  # privacy, then inversion, then tasks
    assert "[" in table[2].split("|")[2]  # an interval after the value
    assert "python benchmarks/comparison.py --adapter" in text and "left out" in text and "**test**" in text
    assert "learned pixel anonymizer" in proc.stdout and doc.with_suffix(".png").is_file()
    blacken = json.loads((out / "rows" / "blacken" / "results.json").read_text())
    assert blacken["run"]["feature_store"] != json.loads((out / "rows" / "splavu" / "results.json").read_text())["run"]["feature_store"]
    # the reading below the marker survives, and finished rows are reused
    doc.write_text(text + "\n<!-- notes: kept by benchmarks/comparison.py -->\nmy reading\n")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    assert again.stdout.count("reusing") == 2 and doc.read_text().endswith("my reading\n")
