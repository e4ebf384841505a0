"""`python -m splavu_ray.train eval.inversion.enabled=true` on tiny built-in data, as a user runs it: the
feature-inversion attack lands in results.json ("reconstruction"), as columns of the results table, as the
PNG grid beside results.json and as a section of report.html."""

import json
import subprocess
import sys

import pytest
from test_train_cli import TINY  # tests/ is on sys.path (rootdir)

pytestmark = pytest.mark.slow


def test_train_command_runs_the_inversion_attack(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "splavu_ray.train", *TINY, "optim.epochs=2", f"data.cache_dir={tmp_path / 'cache'}",
           "eval.tasks=[privacy,action,reconstruction]", "eval.inversion.enabled=true", "eval.inversion.epochs=3",
           "eval.inversion.width=16", "eval.inversion.grid_images=4", f"output_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rec = json.loads((out / "results.json").read_text())["reconstruction"]
    assert rec["sizes"] == {"train": 48, "test": 24} and rec["grid"] == "inversion.png"
    for key in ("psnr_raw", "psnr_anonymized", "cmap_raw", "cmap_anonymized", "cmap_chance"):
        assert isinstance(rec[key], float), key
    table = (out / "results.md").read_text()
    assert "inversion PSNR dB" in table and "reconstruction attribute cMAP" in table
    assert "inversion PSNR dB" in proc.stdout  # the printed table too
    assert (out / "inversion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.html").read_text()
    assert "Feature inversion" in report and 'alt="feature inversion grid"' in report
