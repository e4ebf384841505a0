"""Person masks of the built-in data and the ``blacken`` pixel baseline: the generator writes a mask per file
without changing a pixel, the decoder blackens exactly the masked pixels of the frames it decoded (eval clips,
static frames, untrimmed windows, images; resized to the decode size), a manifest without masks is refused
before any work, and ``python -m splavu_ray.evaluate baselines=[blacken]`` scores its row."""

import json

import numpy as np
import pyarrow as pa
import pytest

from splavu_ray.config import ConfigError, SyntheticConfig, load_config
from splavu_ray.data import synthetic as S
from splavu_ray.data.decode import iter_windows, load_clips
from splavu_ray.data.feature_store import FeatureStore, default_store_root
from splavu_ray.data.frames import RowDecoder, decode_size
from splavu_ray.data.manifest import read_manifest, write_manifest
from splavu_ray.data.person_masks import PersonMaskError, frame_masks, read_mask, require_masks, resize_mask
from splavu_ray.data.pixel_ops import apply_pixel_transform, blacken
from splavu_ray.distributed.feature_job import _write_shard, extract_features
from splavu_ray.evaluate import main
from splavu_ray.models.adapter import AnonymizingAdapter, save_adapter
from splavu_ray.models.embedder import Embedder

SIZE = 64  # the tiny backbone's input side: frames decode at decode_size(64) = 73 px, resized from 64
FAST = ["eval.privacy.attacker_epochs=4", "eval.privacy.attackers=[mlp]", "eval.inversion.epochs=2",
        "eval.inversion.width=16", "eval.inversion.grid_images=0", "eval.bootstrap.resamples=50"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("masks")
    syn = SyntheticConfig(videos_per_split={"train": 2}, privacy_images={"train": 12, "test": 8},
                          untrimmed_videos={"train": 1})
    return tmp, syn, str(S.generate(syn, tmp / "data", workers=1))


def _row(manifest: str, split: str) -> dict:
    return next(r for r in read_manifest(manifest).rows() if r["split"] == split)


def test_generator_writes_a_mask_per_file_and_the_same_pixels(data):
    _, syn, manifest = data
    rows = read_manifest(manifest).rows()
    assert all(r["person_mask"] and r["person_mask"].endswith(".npz") for r in rows)
    for item in S.plan(syn)[:: 5]:
        mask = np.zeros((item.n_frames, syn.resolution, syn.resolution), bool)
        with_mask = S.render_item(item, syn, person_mask=mask)
        assert np.array_equal(with_mask, S.render_item(item, syn))  # painting the mask draws nothing from the rng
        stored = read_mask(next(r["person_mask"] for r in rows if r["uri"].endswith(item.path)))
        assert np.array_equal(stored, mask) and 0.02 < mask.mean() < 0.5  # a person, not the whole frame


def test_blacken_is_black_exactly_in_the_mask(data):
    _, _, manifest = data
    cfg = load_config(None, ["data.pixel.transform=blacken", "data.num_eval_clips=3", "data.frame_stride=2",
                             "data.num_static_frames=4"])
    plain = load_config(None, ["data.num_eval_clips=3", "data.frame_stride=2", "data.num_static_frames=4"])
    short = decode_size(SIZE)
    # a trimmed video: eval clips (strided) and static frames, the mask cut to the same frame indices
    row = _row(manifest, "train")
    dec = load_clips(row, mode="eval", clip_len=16, num_clips=3, static_k=4, size=short, stride=2)
    (part,) = RowDecoder(cfg.data, SIZE).parts(row)
    (raw,) = RowDecoder(plain.data, SIZE).parts(row)
    for key, idx in (("clips", dec["clip_indices"]), ("static", dec["static_indices"])):
        mask = frame_masks(row, idx, short, short)
        assert part[key].shape == raw[key].shape == mask.shape + (3,)
        assert np.array_equal(part[key], np.where(mask[..., None], 0, raw[key]))
        assert mask.any() and (~mask).any()
    # an untrimmed video: every window, frame by frame, the padded tail repeating the last frame's mask
    row = _row(manifest, "tad_train")
    got = np.concatenate([p["clips"] for p in RowDecoder(cfg.data, SIZE, windows_per_part=3).parts(row)])
    windows = np.stack([w for w, _ in iter_windows(row["uri"], 16, size=short)])
    n = row["num_frames"]
    idx = np.minimum(np.arange(windows.shape[0] * 16), n - 1).reshape(-1, 16)
    assert np.array_equal(got, np.where(frame_masks(row, idx, short, short)[..., None], 0, windows))
    # an image: its one mask
    row = _row(manifest, "privacy_train")
    (part,) = RowDecoder(cfg.data, SIZE).parts(row)
    (raw,) = RowDecoder(plain.data, SIZE).parts(row)
    mask = frame_masks(row, np.zeros(1, np.int64), short, short)
    assert np.array_equal(part["static"], np.where(mask[..., None], 0, raw["static"]))


def test_mask_resizing_and_the_transform():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 3, 4] = True
    assert resize_mask(mask, 4, 4)[0].sum() == 1  # shrinking keeps a pixel the person touches
    assert resize_mask(mask, 16, 16)[0].sum() == 4
    frames = np.full((1, 8, 8, 3), 200, np.uint8)
    out = apply_pixel_transform(frames, "blacken", mask=mask)
    assert (out[mask] == 0).all() and (out[~mask] == 200).all()
    with pytest.raises(ValueError, match="person masks"):
        apply_pixel_transform(frames, "blacken")
    with pytest.raises(ValueError, match="does not match"):
        blacken(frames, mask[:, :4])
    with pytest.raises(PersonMaskError, match="'person_mask'"):
        require_masks([{"uri": "a.mp4", "person_mask": None}], "manifest 'm'")


def _build_store(cfg, manifest: str) -> None:
    """What `python -m splavu_ray.features` writes, in-process (the Embedder without Ray Data)."""
    man = read_manifest(manifest)
    rows = man.rows()
    res = Embedder(cfg.to_dict(), threads=1)(pa.Table.from_pylist([{**r, "_key": i} for i, r in enumerate(rows)]))
    store = FeatureStore(default_store_root(cfg, manifest))
    _write_shard(store, 0, rows, dict(enumerate(res.to_pylist())))
    store.write_meta({"num_shards": 1, "num_rows": len(rows), "dim": 192, "actions": list(man.actions),
                      "attributes": list(man.attributes), "backbone": {"name": "random:tiny", "embed_dim": 192}})


def test_cli_scores_blacken_and_refuses_a_manifest_without_masks(data, capsys):
    tmp, _, manifest = data
    images = str(tmp / "images.parquet")  # the privacy images only: what reconstruction and privacy read
    man = read_manifest(manifest)
    write_manifest(images, [r for r in man.rows() if r["split"].startswith("privacy")], man.actions, man.attributes)
    common = [f"data.dataset={images}", f"data.privacy_manifest={images}", "backbone.source=random:tiny",
              "backbone.pooling=mean", f"data.cache_dir={tmp / 'cache'}", "eval.tasks=[privacy,reconstruction]", *FAST]
    for extra in ([], ["data.pixel.transform=blacken"]):
        _build_store(load_config(None, [*common, *extra]), images)
    adapter = save_adapter(AnonymizingAdapter(192, layers=1, heads=4), tmp / "adapter")
    out = tmp / "out"
    assert main([f"adapter={adapter}", *common, "baselines=[blacken]", f"output_dir={out}"]) == 0
    res = json.loads((out / "results.json").read_text())
    row = json.loads((out / "baselines" / "blacken" / "results.json").read_text())
    assert res["baselines"]["blacken"]["privacy cMAP, worst attacker"] == row["privacy"]["cmap_worst_raw"]
    assert row["run"]["pixel"]["transform"] == "blacken"
    table = (out / "baselines.md").read_text().splitlines()
    assert [r.split("|")[1].strip() for r in table[2:]] == ["raw", "blacken", "SPLAVU (f_A)", "chance"]
    assert "blacken" in capsys.readouterr().out

    # the same manifest without the column: refused before any work, the column named
    bare = str(tmp / "bare.parquet")
    write_manifest(bare, [{k: v for k, v in r.items() if k != "person_mask"} for r in read_manifest(images).rows()],
                   man.actions, man.attributes)
    assert read_manifest(bare).rows()[0]["person_mask"] is None  # optional: a manifest without masks still reads
    bare_common = [c.replace(images, bare) for c in common]
    assert main([f"adapter={adapter}", *bare_common, "baselines=[blacken]", f"output_dir={tmp / 'bare_out'}"]) == 2
    err = capsys.readouterr().err
    assert "person_mask" in err and "blacken" in err and not (tmp / "bare_out").exists()
    # feature extraction alone (python -m splavu_ray.features data.pixel.transform=blacken) refuses it before Ray
    with pytest.raises(ConfigError, match="'person_mask'"):
        extract_features(load_config(None, [*bare_common, "data.pixel.transform=blacken"]), bare,
                         str(tmp / "bare_store"), progress=False)
    assert not (tmp / "bare_store").exists()


def test_baselines_are_points_on_the_report_plot_and_rows_with_intervals():
    from splavu_ray.evaluation.baselines import comparison_table
    from splavu_ray.evaluation.plots import privacy_utility_figure
    from splavu_ray.evaluation.run_report import render
    from splavu_ray.evaluation.suite import table_columns

    ci = {"raw": [78.0, 82.0], "anonymized": [58.0, 62.0], "drop": 20.0, "drop_interval": [17.0, 23.0]}
    results = {"privacy": {"cmap_worst_raw": 80.0, "cmap_worst_anonymized": 60.0, "cmap_worst_chance": 50.0,
                           "intervals": {"cmap_worst": ci}},
               "action": {"top1_raw": 40.0, "top1_anonymized": 41.0}}
    blacken_res = {"privacy": {"cmap_worst_raw": 55.0, "cmap_worst_anonymized": 55.0,
                               "intervals": {"cmap_worst": {"raw": [52.0, 58.0]}}},
                   "action": {"top1_raw": 30.0, "top1_anonymized": 30.0}}
    results["baselines"] = {"blacken": {"privacy cMAP, worst attacker": 55.0, "action top-1": 30.0}}
    fig = privacy_utility_figure(results, table_columns())
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "blacken" in labels and [t.get_text() for t in fig.axes[0].texts if t.get_text() == "blacken"]
    assert "pixel baselines as squares" in render(results, [], table_columns())
    table = comparison_table(results, {"blacken": blacken_res}, table_columns(), first=("action",)).splitlines()
    assert table[0].split("|")[2].strip().startswith("action top-1")  # the sections asked for first lead
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in table[2:]}
    assert cells["raw"][1] == "80.00 [78.0, 82.0]" and cells["SPLAVU (f_A)"][1] == "60.00 [58.0, 62.0]"
    assert cells["blacken"][1] == "55.00 [52.0, 58.0]" and cells["chance"][1] == "50.00"
