"""The privacy task on a manifest of VIDEOS (PA-HMDB51 / VP-HMDB51 / VP-UCF101): attackers see each video's
clip features, results name the benchmark and its attributes; and, slow, the whole path a user takes:
real video files -> builder CLI -> `python -m splavu_ray.evaluate` -> results.json / results.md."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from splavu_ray.config import load_config
from splavu_ray.data.feature_store import FeatureSplit
from splavu_ray.evaluation.privacy import attack_inputs, privacy_section
from splavu_ray.evaluation.suite import report_table
from splavu_ray.evaluation.task import cpu_threads
from splavu_ray.models.adapter import AnonymizingAdapter

ATTRS = ("skin_color", "face", "gender", "nudity", "relationship")
FAST = ["eval.privacy.attackers=[mlp, linear]", "eval.privacy.attacker_epochs=20", "eval.privacy.attacker_lr=0.01",
        "eval.batch_size=20", "eval.bootstrap.resamples=0"]


def video_split(n: int, dim: int, seed: int, clips: int = 3) -> FeatureSplit:
    """Videos whose attributes live in the clip features only (the static clips are pure noise)."""
    rng = np.random.default_rng(seed)
    dirs = 2 * np.eye(dim)[: len(ATTRS)]  # one axis per attribute
    rows, cl, st = [], [], []
    for i in range(n):
        y = rng.integers(0, 2, size=len(ATTRS))
        y[0] = i % 2  # both values of every attribute in every split
        signal = (2 * y - 1) @ dirs
        cl.append((rng.normal(size=(clips + i % 2, dim)) * 0.5 + signal).astype(np.float32))  # 3 or 4 clips
        st.append(rng.normal(size=(2, dim)).astype(np.float32))
        rows.append({"uri": f"/v/{seed}_{i}.avi", "dataset": "pa_hmdb51", "media": "video",
                     "private_attributes": [a for a, on in zip(ATTRS, y) if on]})
    return FeatureSplit(rows, cl, st, attributes=ATTRS, dim=dim)


def test_attack_inputs_average_each_videos_clips_under_the_view():
    split = video_split(6, 8, 0)
    image = {"uri": "/i.jpg", "dataset": "vispr", "media": "image", "private_attributes": []}
    split = FeatureSplit([*split.rows, image], [*split.clips, np.zeros((0, 8), np.float32)],
                         [*split.static, np.full((1, 8), 7.0, np.float32)], attributes=ATTRS, dim=8)
    seen = []

    def view(x):
        seen.append(x.shape)
        return 2 * x

    x = attack_inputs(split, view)
    assert sorted(seen) == [(1, 8), (3, 3, 8), (3, 4, 8)]  # the image; videos batched by clip count
    np.testing.assert_allclose(x[1], 2 * split.clips[1].mean(0), rtol=1e-6)
    np.testing.assert_allclose(x[-1], 14.0)


def test_privacy_section_on_videos_names_the_benchmark_and_its_attributes():
    cfg = load_config(None, FAST)
    torch_seeded = AnonymizingAdapter(16, layers=1, heads=4)
    with cpu_threads(1):  # tiny tensors: one thread is fastest
        res = {"privacy": privacy_section(cfg, torch_seeded, video_split(60, 16, 1), video_split(40, 16, 2))}
    p = res["privacy"]
    assert p["benchmark"] == "PA-HMDB51" and p["attributes"] == list(ATTRS)
    assert p["input"] == "mean clip feature per video"
    assert set(p["per_attribute"]) == set(ATTRS) and set(p["per_attribute_raw"]) == set(ATTRS)
    assert p["cmap_worst_raw"] > 85 > p["cmap_chance"] + 20  # the clips carry the attributes; static is noise
    table = report_table(res)
    assert table.splitlines()[0].startswith("|  | privacy cMAP, worst attacker, PA-HMDB51 (lower=better) |")
    assert "Privacy per attribute on PA-HMDB51" in table
    assert "| | skin_color | face | gender | nudity | relationship | cMAP |".replace("| |", "|  |") in table
    assert len([line for line in table.splitlines() if line.startswith(("| raw", "| anonymized", "| chance"))]) >= 6


# --- the whole path, through the CLIs ------------------------------------------------------------
@pytest.mark.slow
def test_pa_hmdb51_through_builder_and_evaluate_clis(tmp_path):
    from videos import write_video

    from splavu_ray.models.adapter import save_adapter

    root = tmp_path / "PA-HMDB51"
    actions, annos, splits = ("brush_hair", "shake_hands"), {}, {}
    for a_i, action in enumerate(actions):
        annos[action], splits[action] = {}, []
        for v in range(6):
            name = f"clip{v}_{action}_u_nm_np1_fr_med_{v}.avi"
            on = (v + a_i) % 2  # skin colour and gender alternate; the other attributes constant or mixed
            annos[action][name] = {
                "skin_color": [[0, 19, on]], "face": [[0, 9, 0], [10, 19, 2]], "gender": [[0, 19, [1, 2] if on else 0]],
                "nudity": [[0, 19, int(v in (0, 3, 5))]], "relationship": [[0, 19, 1 - on]], "review": True, "note": ""}
            splits[action].append(f"{name} {1 if v < 4 else 2}")
            (root / "hmdb51_org" / action).mkdir(parents=True, exist_ok=True)
            write_video(root / "hmdb51_org" / action / name, num_frames=20, height=32, width=32, fps=10)  # mpeg4 .avi
        (root / "PrivacyAttributes").mkdir(exist_ok=True)
        (root / "PrivacyAttributes" / f"{action}.json").write_text(json.dumps(annos[action], indent=4))
        (root / "testTrainMulti_7030_splits").mkdir(exist_ok=True)
        (root / "testTrainMulti_7030_splits" / f"{action}_test_split1.txt").write_text("\n".join(splits[action]) + "\n")

    manifest = tmp_path / "pa_hmdb51.parquet"
    built = subprocess.run([sys.executable, "-m", "splavu_ray.data.builders", "pa_hmdb51", str(root), str(manifest)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    assert "pa_hmdb51: 12 rows (privacy_test=4, privacy_train=8), 2 actions" in built.stdout

    adapter = tmp_path / "adapter"
    save_adapter(AnonymizingAdapter(192, layers=1, heads=4), adapter)  # random:tiny's width
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "splavu_ray.evaluate", f"adapter={adapter}", f"data.dataset={manifest}",
           f"data.privacy_manifest={manifest}", "eval.tasks=[privacy]", "backbone.source=random:tiny",
           "backbone.pooling=mean", "data.clip_len=8", "data.num_eval_clips=2", "data.num_static_frames=2",
           "data.decode_workers=1", f"data.cache_dir={tmp_path / 'cache'}", f"output_dir={out}", "eval.plots=false",
           *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    p = json.loads((out / "results.json").read_text())["privacy"]
    assert p["benchmark"] == "PA-HMDB51" and p["attributes"] == list(ATTRS)
    assert p["input"] == "mean clip feature per video" and p["sizes"] == {"train": 8, "test": 4}
    for key in ("cmap_raw", "cmap_anonymized", "cmap_worst_raw", "cmap_worst_anonymized", "cmap_chance"):
        assert 0 <= p[key] <= 100
    # every video shows a face: AP is undefined for it, so it is listed as not scored (n/a in the table)
    assert set(p["per_attribute"]) == set(ATTRS) - {"face"} and p["attributes_not_scored"] == ["face"]
    table = (out / "results.md").read_text()
    assert "privacy cMAP, worst attacker, PA-HMDB51" in table and "Privacy per attribute on PA-HMDB51" in table
    assert table in proc.stdout + "\n"
