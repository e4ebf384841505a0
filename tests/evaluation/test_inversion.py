"""The feature-inversion attack (results.json "reconstruction") and the pixel baselines, through
`python -m splavu_ray.evaluate` as a user runs it, on a few built-in privacy images whose feature stores are
prepared in-process (no Ray; the slow test at the end lets the command extract them with Ray Data)."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from splavu_ray.config import ConfigError, SyntheticConfig, load_config
from splavu_ray.data.feature_store import FeatureStore, default_store_root, store_key
from splavu_ray.data.manifest import read_manifest
from splavu_ray.data.pixel_ops import NEEDS_MASK, PIXEL_TRANSFORMS, apply_pixel_transform, gaussian_blur, pixelate
from splavu_ray.data.synthetic import generate
from splavu_ray.distributed.feature_job import _write_shard
from splavu_ray.evaluate import main
from splavu_ray.evaluation.suite import TASKS, plan_evaluation
from splavu_ray.models.adapter import AnonymizingAdapter, save_adapter
from splavu_ray.models.embedder import Embedder
from splavu_ray.models.inverter import FeatureInverter, fit_inverter, invert

FAST = ["eval.privacy.attacker_epochs=8", "eval.privacy.attackers=[mlp]", "eval.inversion.epochs=3",
        "eval.inversion.width=16", "eval.inversion.grid_images=4"]


class Blind(AnonymizingAdapter):
    """Every feature becomes zero: nothing can be reconstructed from the anonymized view."""

    def forward(self, x, padding_mask=None):
        return torch.zeros_like(x)


def build_store(cfg, manifest: str) -> None:
    """What `python -m splavu_ray.features` writes, in-process (the Embedder without Ray Data)."""
    man = read_manifest(manifest)
    rows = man.rows()
    embed = Embedder(cfg.to_dict(), threads=1)
    res = embed(pa.Table.from_pylist([{**r, "_key": i} for i, r in enumerate(rows)])).to_pylist()
    store = FeatureStore(default_store_root(cfg, manifest))
    _write_shard(store, 0, rows, dict(enumerate(res)))
    store.write_meta({"num_shards": 1, "num_rows": len(rows), "dim": 192, "actions": list(man.actions),
                      "attributes": list(man.attributes), "backbone": {"name": "random:tiny", "embed_dim": 192}})


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Built-in privacy images (train 24, test 12) and their complete feature store where evaluate looks."""
    tmp = tmp_path_factory.mktemp("inv")
    syn = SyntheticConfig(videos_per_split={}, privacy_images={"train": 24, "test": 12}, untrimmed_videos={})
    manifest = str(generate(syn, tmp / "data", workers=1))
    common = [f"data.dataset={manifest}", f"data.privacy_manifest={manifest}", "backbone.source=random:tiny",
              "backbone.pooling=mean", f"data.cache_dir={tmp / 'cache'}", *FAST]
    for extra in ([], ["data.pixel.transform=blur"]):  # the frames as decoded, and the blur baseline's
        build_store(load_config(None, [*common, *extra]), manifest)
    torch.manual_seed(0)
    identity = save_adapter(AnonymizingAdapter(192, layers=1, heads=4), tmp / "identity")  # f_A before training
    return tmp, common, identity


def test_inverter_learns_to_reconstruct():
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=(16, 16, 16, 3)).astype(np.float32)
    feats = frames.reshape(16, -1)[:, :64] * 4 - 2  # the features carry part of each frame
    model, loss = fit_inverter(feats, frames, epochs=30, lr=3e-3, width=16, batch_size=8, seed=0)
    out = invert(model, feats)
    assert out.shape == frames.shape and 0 <= out.min() and out.max() <= 1
    assert loss["train_mse"] < float(((frames - frames.mean()) ** 2).mean())  # better than the mean image
    assert FeatureInverter(8, 48)(torch.zeros(2, 8)).shape == (2, 3, 48, 48)  # a side that is not 4 * 2^k


def test_config_is_validated_and_the_attack_is_opt_in(images):
    _, common, _ = images
    with pytest.raises(ConfigError, match="eval.inversion"):
        load_config(None, ["eval.inversion.epochz=3"])
    with pytest.raises(ConfigError, match="eval.inversion.epochs"):
        load_config(None, ["eval.inversion.epochs=0"])
    manifest = common[0].split("=", 1)[1]
    manifests = {"main": manifest, "privacy": manifest}
    task = TASKS["reconstruction"]  # with eval.tasks unset, planned only when enabled
    assert not task.default_on(load_config(None, common))
    assert task.default_on(load_config(None, [*common, "eval.inversion.enabled=true"]))
    on = load_config(None, [*common, "eval.tasks=[privacy,reconstruction]"])
    assert plan_evaluation(on, manifests).tasks == ["privacy", "reconstruction"]


def test_cli_reports_reconstruction_and_writes_the_grid(images, capsys):
    tmp, common, identity = images
    out = tmp / "eval"
    assert main([f"adapter={identity}", *common, "eval.tasks=[privacy,reconstruction]", f"output_dir={out}"]) == 0
    stdout = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    rec = res["reconstruction"]
    for tag in ("raw", "transfer", "adaptive", "anonymized"):
        assert 0 < rec[f"psnr_{tag}"] < 60 and -1 <= rec[f"ssim_{tag}"] <= 1 and 0 <= rec[f"cmap_{tag}"] <= 100
    # f_A at its start is the identity: the transfer setting sees the raw features
    assert rec["psnr_transfer"] == rec["psnr_raw"] and rec["cmap_transfer"] == rec["cmap_raw"]
    assert rec["psnr_anonymized"] == max(rec["psnr_transfer"], rec["psnr_adaptive"])
    assert rec["sizes"] == {"train": 24, "test": 12} and rec["setting"]["frame_size"] == 64
    assert (out / "inversion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and rec["grid"] == "inversion.png"
    assert "reconstruction attribute cMAP" in (out / "results.md").read_text() and "inversion PSNR" in stdout


def test_nothing_is_reconstructed_from_zeroed_features(images, monkeypatch):
    tmp, common, identity = images
    monkeypatch.setattr("splavu_ray.evaluate.load_adapter", lambda path: Blind(192, layers=1, heads=4))
    out = tmp / "blind"
    assert main([f"adapter={identity}", *common, "eval.tasks=[reconstruction]", "eval.plots=false",
                 f"output_dir={out}"]) == 0
    rec = json.loads((out / "results.json").read_text())["reconstruction"]
    # Every test image gets the same reconstruction: the attribute attacker is at chance, in both settings.
    assert rec["cmap_adaptive"] == pytest.approx(rec["cmap_chance"]) == pytest.approx(rec["cmap_transfer"])
    assert "grid" not in rec and not (out / "inversion.png").exists()


def test_pixel_transforms():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 5, 32, 40, 3), dtype=np.uint8)
    for name in (t for t in PIXEL_TRANSFORMS if t not in NEEDS_MASK):  # blacken: tests/data/test_person_masks.py
        out = apply_pixel_transform(frames, name)
        assert out.shape == frames.shape and out.dtype == np.uint8
        assert out.astype(float).std() < frames.astype(float).std()  # every one removes detail
    blocks = pixelate(frames, 4)[0, 0, :8, :8]  # 4 blocks across the 32-pixel side: 8x8 blocks of one colour
    assert (blocks == blocks[0, 0]).all()
    assert torch.equal(gaussian_blur(torch.full((4, 4, 3), 7, dtype=torch.uint8), 0.1),
                       torch.full((4, 4, 3), 7, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown pixel transform"):
        apply_pixel_transform(frames, "swirl")
    # the transform is part of a feature store's identity; without one, identities do not change
    keys = {t: store_key(load_config(None, [f"data.pixel.transform={t}"] if t else []), "/x.parquet")
            for t in (None, "blur", "pixelate")}
    assert len(set(keys.values())) == 3
    with pytest.raises(ConfigError, match="eval.baselines"):
        load_config(None, ["eval.baselines=[swirl]"])


def test_cli_scores_pixel_baselines_next_to_the_adapter(images, capsys):
    tmp, common, identity = images
    out = tmp / "baselines"
    assert main([f"adapter={identity}", *common, "baselines=[blur]", "eval.tasks=[privacy,reconstruction]",
                 f"output_dir={out}"]) == 0
    stdout = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    blur = json.loads((out / "baselines" / "blur" / "results.json").read_text())
    row = res["baselines"]["blur"]
    assert row["privacy cMAP, worst attacker"] == blur["privacy"]["cmap_worst_raw"]
    assert row["inversion PSNR dB"] == blur["reconstruction"]["psnr_raw"]
    assert blur["run"]["pixel"]["transform"] == "blur"
    # blurred frames give other features than the frames as decoded
    assert blur["privacy"]["cmap_worst_raw"] != res["privacy"]["cmap_worst_raw"]
    table = (out / "baselines.md").read_text().splitlines()
    assert [r.split("|")[1].strip() for r in table[2:]] == ["raw", "blur", "SPLAVU (f_A)", "chance"]
    assert "inversion PSNR dB" in table[0] and "pixel baselines" in stdout
    assert not (out / "baselines.png").exists()  # no utility column to plot privacy against


def test_comparison_plot_has_a_point_per_row(tmp_path):
    from splavu_ray.evaluation.baselines import comparison_plot
    from splavu_ray.evaluation.suite import table_columns

    results = {"privacy": {"cmap_worst_raw": 80.0, "cmap_worst_anonymized": 60.0},
               "action": {"top1_raw": 40.0, "top1_anonymized": 41.0}}
    baselines = {"blur": {"privacy": {"cmap_worst_raw": 70.0, "cmap_worst_anonymized": 70.0},
                          "action": {"top1_raw": 30.0, "top1_anonymized": 30.0}}}
    path = comparison_plot(results, baselines, table_columns(), tmp_path / "b.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_evaluate_command_extracts_baseline_stores_with_ray(tmp_path):
    """The whole user path on tiny built-in data: data generated, raw and downsample4 features extracted by
    Ray Data, every task plus the inversion attack on both, the comparison table and plot written."""
    import subprocess
    import sys

    tiny = ["data.synthetic.videos_per_split={pretrain: 1, train: 24, val: 4, test: 12}",
            "data.synthetic.privacy_images={train: 24, test: 12}", "data.synthetic.untrimmed_videos={train: 1, test: 1}",
            "data.num_static_frames=2", "data.num_eval_clips=2", "data.decode_workers=1",
            f"data.cache_dir={tmp_path / 'cache'}", "eval.tasks=[privacy,action,reconstruction]", *FAST]
    adapter = save_adapter(AnonymizingAdapter(192, layers=1, heads=4), tmp_path / "adapter")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.evaluate", f"adapter={adapter}", "baselines=[downsample4]",
                           *tiny, f"output_dir={out}"], check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    res = json.loads((out / "results.json").read_text())
    assert set(res["baselines"]) == {"downsample4"} and "action top-1" in res["baselines"]["downsample4"]
    assert res["reconstruction"]["sizes"] == {"train": 24, "test": 12}
    assert (out / "baselines" / "downsample4" / "inversion.png").is_file() and (out / "inversion.png").is_file()
    assert (out / "baselines.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "downsample4" in (out / "baselines.md").read_text() and "pixel baselines" in proc.stdout
