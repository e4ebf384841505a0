"""Toyota Smarthome (natural bias) and CASIA-B (gait) as a user runs them: real tiny videos in the public
layouts -> `python -m splavu_ray.data.builders` -> `python -m splavu_ray.evaluate` -> results.json / table."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import videos
from toy import make_toy_store

from splavu_ray.config import load_config
from splavu_ray.data.builders.__main__ import main as build_main
from splavu_ray.data.feature_store import default_store_root
from splavu_ray.data.manifest import read_manifest, write_manifest
from splavu_ray.evaluate import main as evaluate_main
from splavu_ray.models.adapter import AnonymizingAdapter, save_adapter

DIM = 192  # backbone.source=random:tiny
FAST = ["eval.privacy.attacker_epochs=8", "eval.action.probe_epochs=8", "eval.privacy.attacker_lr=0.01",
        "eval.action.probe_lr=0.01", "eval.privacy.bank_lrs=[0.01]", "eval.privacy.bank_weight_decays=[0.0]",
        "eval.action.probe_c=1.0"]
TOYOTA = {"p03": "F", "p04": "M", "p02": "F", "p10": "M"}  # CS: p03, p04 train; p02, p10 test
CASIA_SEQUENCES = ("nm-01", "nm-02", "nm-05", "bg-01", "cl-01")


def tinted(colour):
    """Frames of one flat colour that brightens over time (so each video differs in content and motion)."""
    base = np.array(colour, dtype=np.int64)

    def frame(i, height, width):
        return np.full((height, width, 3), np.clip(base + 6 * i, 0, 255), dtype=np.uint8)

    return frame


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gait_toyota")
    toyota = tmp / "toyota_smarthome"
    (toyota / "mp4").mkdir(parents=True)
    for s in TOYOTA:
        for a, action in enumerate(("Walk", "Sitdown")):
            for k in range(2):
                colour = (40 + 120 * a, 60 + 20 * k, 80 + 30 * int(s[1:]) % 120)
                videos.write_video(toyota / f"mp4/{action}_{s}_r0{k}_v{k + 1:02d}_c01.mp4", num_frames=20,
                                   height=40, width=56, frame_fn=tinted(colour))  # H.264 in MP4, like the release
    genders = tmp / "toyota_genders.csv"  # Toyota Smarthome publishes none: the user's table
    genders.write_text("subject,gender\n" + "".join(f"{s},{g}\n" for s, g in TOYOTA.items()))
    casia = tmp / "CASIA-B"
    (casia / "DatasetB-2/video").mkdir(parents=True)
    walks = [("001", "nm-01", "000")] + [(s, q, v) for s in ("075", "076") for q in CASIA_SEQUENCES for v in ("000", "090")]
    for s, q, v in walks:
        colour = (30 + 150 * (s == "076"), 90 + 40 * (v == "090"), 60 + 10 * CASIA_SEQUENCES.index(q))
        videos.write_video(casia / f"DatasetB-2/video/{s}-{q}-{v}.avi", num_frames=20, height=40, width=56,
                           frame_fn=tinted(colour))
    manifests = {"toyota": tmp / "toyota.parquet", "casia": tmp / "casia_b.parquet"}
    assert build_main(["toyota_smarthome", str(toyota), str(manifests["toyota"]), "--genders", str(genders)]) == 0
    assert build_main(["casia_b", str(casia), str(manifests["casia"])]) == 0
    return tmp, manifests


@pytest.fixture(scope="module")
def main_data(data):
    """The main dataset: a toy manifest whose feature store is already where the evaluate CLI looks."""
    tmp, _ = data
    toy = make_toy_store(tmp / "toy", n_train=48, n_val=4, n_test=42, dim=DIM, clips=5)
    split = toy.load()
    manifest = tmp / "main.parquet"
    write_manifest(str(manifest), split.rows, split.actions, split.attributes)
    common = [f"data.dataset={manifest}", f"data.privacy_manifest={manifest}", "backbone.source=random:tiny",
              "backbone.pooling=mean", f"data.cache_dir={tmp / 'cache'}", "data.decode_workers=1", *FAST]
    shutil.copytree(toy.root, default_store_root(load_config(None, common), str(manifest)))
    adapter = tmp / "adapter"
    torch.manual_seed(0)
    save_adapter(AnonymizingAdapter(DIM, layers=1, heads=4), adapter)
    return common, adapter


def test_built_manifests_follow_the_protocols(data):
    _, manifests = data
    toyota = read_manifest(str(manifests["toyota"]))
    assert {(r["subject_id"], r["split"], r["gender"]) for r in toyota.rows()} == {
        ("p03", "train", "female"), ("p04", "train", "male"), ("p02", "test", "female"), ("p10", "test", "male")}
    casia = read_manifest(str(manifests["casia"]))
    assert sorted({(r["subject_id"], r["split"]) for r in casia.rows()}) == [
        ("001", "train"), ("075", "test"), ("076", "test")]


def test_a_manifest_that_does_not_fit_fails_before_any_work(data, main_data, capsys):
    tmp, manifests = data
    common, adapter = main_data
    out = tmp / "never"
    # a Toyota manifest is no CASIA-B one, and CASIA-B has no genders: both stop before feature extraction
    assert evaluate_main([f"adapter={adapter}", *common, f"eval.gait.manifest={manifests['toyota']}",
                          f"output_dir={out}"]) == 2
    assert "eval task 'gait'" in (err := capsys.readouterr().err) and "not CASIA-B walks" in err
    assert evaluate_main([f"adapter={adapter}", *common, f"eval.toyota_bias.manifest={manifests['casia']}",
                          f"output_dir={out}"]) == 2
    assert "eval task 'toyota_bias'" in capsys.readouterr().err
    assert evaluate_main([f"adapter={adapter}", *common, "eval.tasks=[gait]", f"output_dir={out}"]) == 2
    assert "set eval.gait.manifest" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_evaluate_cli_scores_toyota_gap_and_casia_b_gait(data, main_data):
    tmp, manifests = data
    common, adapter = main_data
    out = tmp / "eval"
    proc = subprocess.run(
        [sys.executable, "-m", "splavu_ray.evaluate", f"adapter={adapter}", *common, f"output_dir={out}",
         f"eval.toyota_bias.manifest={manifests['toyota']}", f"eval.gait.manifest={manifests['casia']}"],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    res = json.loads((out / "results.json").read_text())
    t = res["toyota_bias"]
    assert t["train_videos"] == 8 and t["test_videos"] == 8 and t["source"] == str(manifests["toyota"])
    assert t["subjects"] == {"train": {"female": 1, "male": 1}, "test": {"female": 1, "male": 1}}
    for tag in ("raw", "anonymized"):
        per = t[tag]["per_group"]
        assert t[f"gap_{tag}"] == pytest.approx(abs(per["female"] - per["male"])) and 0 <= t[f"overall_{tag}"] <= 100
    g = res["gait"]
    assert g["subjects"] == 2 and g["gallery"] == 8 and g["probes"] == {"nm": 4, "bg": 4, "cl": 4}
    assert g["views"] == ["000", "090"] and g["top1_chance"] == 50.0
    for tag in ("raw", "anonymized"):
        assert g[f"top1_{tag}"] == pytest.approx(np.mean([g[f"{c}_top1_{tag}"] for c in ("nm", "bg", "cl")]))
        assert set(g["per_view"][tag]["nm"]) == {"000", "090"}
    assert {"toyota_bias", "gait", "privacy", "action"} <= set(res["timing_s"])
    table = (out / "results.md").read_text()
    for header in ("bias gap Toyota Smarthome", "CASIA-B gait top-1 NM", "CASIA-B gait top-1 BG",
                   "CASIA-B gait top-1 CL", "CASIA-B gait top-1 mean"):
        assert header in table and header in proc.stdout
