"""`python -m splavu_ray.train` with train.anonymizer=pixel_unet, as a user runs it: f_P trains on Ray Train
(online), is exported, and is scored like a pixel baseline row; a bad combination fails before any work."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from splavu_ray.config import load_config
from splavu_ray.data.feature_store import default_store_root
from splavu_ray.data.pixel_ops import anonymizer_digest
from splavu_ray.data.sources import resolve_manifests
from splavu_ray.evaluation.baselines import pixel_config
from splavu_ray.models.pixel_anonymizer import load_pixel_anonymizer

TINY = [
    "train.anonymizer=pixel_unet", "pixel_unet.width=4", "pixel_unet.depth=1",
    "train.mode=online", "backbone.source=random:tiny", "backbone.image_size=32", "data.clip_len=8",
    "data.synthetic.resolution=32", "data.synthetic.num_frames=16",
    "data.synthetic.videos_per_split={pretrain: 1, train: 16, val: 4, test: 8}",
    "data.synthetic.privacy_images={train: 8, test: 8}", "data.synthetic.untrimmed_videos={train: 1, test: 1}",
    "data.num_static_frames=4", "data.num_eval_clips=2", "data.decode_workers=1", "data.decode_batch_size=4",
    "optim.batch_size=8", "optim.base_batch_size=8", "optim.lr=1e-3", "optim.epochs=1", "optim.head_epochs=1",
    "optim.warmup_epochs=0", "scaling.num_workers=1", "scaling.cpus_per_worker=1",
    "eval.tasks=[privacy,action]", "eval.privacy.attacker_epochs=3", "eval.bootstrap.resamples=0", "eval.plots=false",
]


def test_bad_combination_fails_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.train", "train.anonymizer=pixel_unet",
                           f"output_dir={tmp_path}/x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "train.anonymizer=pixel_unet needs train.mode=online" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_pixel_anonymizer_trains_exports_and_is_scored(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.train", *TINY, f"data.cache_dir={tmp_path / 'cache'}",
                           "run_name=pxu", f"output_dir={out}"], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for name in ("best_pixel_anonymizer", "pixel_anonymizer"):
        assert load_pixel_anonymizer(out / name).hparams == {"kind": "pixel_unet", "width": 4, "depth": 1}
    assert not (out / "best_adapter").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["anonymizer"] == "pixel_unet"
    row = results["baselines"]["learned pixel anonymizer (f_P)"]
    assert {"privacy cMAP, worst attacker", "action top-1"} <= set(row)
    assert all(0 <= v <= 100 for v in row.values())
    assert 0 <= results["action"]["top1_raw"] <= 100  # the raw row, from the raw store
    table = (out / "results.md").read_text()
    assert "| raw |" in table and "| learned pixel anonymizer (f_P) |" in table and "SPLAVU" not in table
    assert "learned pixel anonymizer (f_P)" in proc.stdout
    # f_P's frames have a feature store of their own, keyed by the weights' digest, not by where they lie
    learned_roots = set(results["run"]["learned_feature_store"].values())
    assert all(Path(r, "meta.json").is_file() for r in learned_roots)
    copy = tmp_path / "moved"
    shutil.copytree(out / "best_pixel_anonymizer", copy)
    assert anonymizer_digest(str(copy)) == anonymizer_digest(str(out / "best_pixel_anonymizer"))
    base = load_config(None, [*TINY, f"data.cache_dir={tmp_path / 'cache'}"])
    moved = pixel_config(base, "learned", str(tmp_path / "x"), anonymizer=str(copy), tasks=["privacy", "action"])
    main = resolve_manifests(base)["main"]
    assert str(Path(default_store_root(moved, main))) in {str(Path(r)) for r in learned_roots}
