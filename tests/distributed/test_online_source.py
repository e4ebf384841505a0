"""Online mode: Ray Data decodes the clips and the frozen backbone runs inside the Ray Train loop."""

import json
from collections import Counter

import pytest
import torch

from splavu_ray.config import ConfigError, load_config
from splavu_ray.data.manifest import read_manifest, write_manifest
from splavu_ray.data.sources import resolve_manifests
from splavu_ray.distributed.clip_stream import read_rejects
from splavu_ray.distributed.online_source import StreamEpochs
from splavu_ray.distributed.torch_trainer import export_from_result, fit, online_frame_side, resume_epoch
from splavu_ray.models.adapter import load_adapter
from splavu_ray.run_folder import RunFolder
from splavu_ray.training.preflight import check_inputs

TINY = [
    "train.mode=online", "backbone.source=random:tiny", "backbone.image_size=32", "data.clip_len=8",
    "data.synthetic.resolution=32", "data.synthetic.num_frames=16",
    "data.synthetic.videos_per_split={pretrain: 1, train: 16, val: 4, test: 1}",
    "data.synthetic.privacy_images={train: 1, test: 1}", "data.synthetic.untrimmed_videos={train: 1, test: 1}",
    "data.num_static_frames=4", "data.num_eval_clips=2", "data.decode_workers=1", "data.decode_batch_size=4",
    "adapter.layers=1", "adapter.heads=4", "optim.batch_size=8", "optim.base_batch_size=8", "optim.lr=1e-3",
    "optim.epochs=1", "optim.head_epochs=1", "optim.warmup_epochs=0",
    "scaling.num_workers=1", "scaling.cpus_per_worker=1",  # leaves 1 of the 2 CPUs to the decoder
]


def test_online_is_accepted_but_not_with_co_training(tmp_path):
    check_inputs(load_config(None, TINY))
    with pytest.raises(ConfigError, match="'train.mode': 'online' trains on trimmed clips only"):
        check_inputs(load_config(None, [*TINY, "loss.w_tad=1"]))
    cfg = load_config(None, TINY)
    assert online_frame_side(cfg) == round(32 * 256 / 224)  # the eval resize of a 32 px backbone


def test_stream_epochs_cut_one_iterator_into_epochs_and_end_cleanly_when_it_runs_dry(tmp_path):
    tags = [[0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [2, 2, 2, 2]]  # a row of 1 overtook one of 0
    started = []

    def stream():  # one generator for the whole run, like iter_train_batches over a shard
        started.append(True)
        for t in tags:
            yield {"row_index": torch.arange(4), "epoch": torch.tensor(t)}

    s = StreamEpochs(stream(), steps=2)
    assert not started  # nothing is read before the first epoch
    assert len(list(s.epoch(0))) == 2 and (s.taken, s.rows, s.other_epoch, s.dry) == (2, 8, 1, None)
    assert len(list(s.epoch(1))) == 2 and (s.taken, s.other_epoch) == (2, 0)
    assert len(list(s.epoch(2))) == 1 and s.dry == (2, 1)  # ran dry after one step: the epoch just ends
    assert list(s.epoch(3)) == [] and (s.taken, s.dry) == (0, (2, 1))  # later epochs: no step, no error
    assert len(started) == 1
    assert resume_epoch(str(tmp_path / "ray"), "no-such-run") == 0


@pytest.mark.slow
def test_online_run_trains_checkpoints_and_reports(ray_session, tmp_path):
    cfg = load_config(None, [*TINY, "run_name=online", f"output_dir={tmp_path / 'out'}",
                             f"data.cache_dir={tmp_path / 'cache'}"])
    synthetic = read_manifest(resolve_manifests(cfg)["main"])
    # Two bad files among the training videos: the run drops and lists them, it does not fail.
    (tmp_path / "not_a_video.mp4").write_text("hello")
    bad = [{"uri": str(tmp_path / "missing.mp4"), "dataset": "synthetic", "split": "train", "media": "video",
            "action": synthetic.actions[0]},
           {"uri": str(tmp_path / "not_a_video.mp4"), "dataset": "synthetic", "split": "train", "media": "video",
            "action": synthetic.actions[1]}]
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), synthetic.rows() + bad, synthetic.actions, synthetic.attributes)

    result = fit(cfg, None, ["train"], ["val"], manifest_path=str(manifest))
    assert result.error is None
    out = export_from_result(result, RunFolder(tmp_path / "export"))
    hist = out["state"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2] and [h["phase"] for h in hist] == ["heads", "joint"]
    for h in hist:
        assert h["clips_per_s"] > 0 and 0 <= h["val_top1"] <= 100 and torch.isfinite(torch.tensor(h["train_loss"]))
    assert {"train_l_lc", "train_l_b", "train_l_t"} <= set(hist[1])
    assert [h["stream_steps"] for h in hist] == [2, 2] and all(h["stream_other_epoch"] < 0.5 for h in hist)
    adapter = load_adapter(out["best_adapter"])  # the backbone's width (random:tiny: 192), no Ray/DeepSpeed
    meta = json.loads((out["best_adapter"] / "adapter.json").read_text())["metadata"]
    assert meta["backbone"]["name"] == "random:tiny" and meta["epoch"] == 2
    x = torch.randn(2, 1, 192)
    assert adapter(x).shape == x.shape
    with result.checkpoint.as_directory() as d:
        assert json.loads((__import__("pathlib").Path(d) / "trainer_state.json").read_text())["epoch"] == 2
    rejects = read_rejects(str(cfg.output_path / "rejects.jsonl"))
    assert {r["reason"] for r in rejects} == {"missing", "not_video"}
    assert {r["count"] for r in rejects} == {2}  # met once per epoch
    lines = read_rejects(str(cfg.output_path / "rejects.jsonl"), unique=False)
    assert sorted(r["epoch"] for r in lines) == [0, 0, 1, 1]  # the stream's rows carry their epoch
    assert len({r["pid"] for r in lines}) == 1  # both epochs came out of ONE decode actor (one execution)


@pytest.mark.slow
def test_online_ranks_stay_in_step_when_the_stream_runs_dry_and_a_resume_streams_the_rest(ray_session, tmp_path):
    """2 workers; 8 missing files make 24 train rows (3 steps of 8 per epoch) of which 16 decode, so the
    stream of 2 epochs holds 4 steps per rank: 3 in epoch 1, 1 in epoch 2, then dry on both ranks. A resume
    with one more epoch streams only epoch 3 (from the checkpoint's epoch): 2 steps, dry again."""
    base = [*TINY, "scaling.num_workers=2", "scaling.cpus_per_worker=0.5", "run_name=dry",
            f"output_dir={tmp_path / 'out'}", f"data.cache_dir={tmp_path / 'cache'}"]
    cfg = load_config(None, base)
    synthetic = read_manifest(resolve_manifests(cfg)["main"])
    bad = [{"uri": str(tmp_path / f"missing{i}.mp4"), "dataset": "synthetic", "split": "train", "media": "video",
            "action": synthetic.actions[0]} for i in range(8)]
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), synthetic.rows() + bad, synthetic.actions, synthetic.attributes)

    result = fit(cfg, None, ["train"], ["val"], manifest_path=str(manifest))
    assert result.error is None
    assert [h["stream_steps"] for h in export_from_result(result, RunFolder(tmp_path / "e1"))["state"]["history"]] == [3, 1]
    assert resume_epoch(str(cfg.output_path / "ray"), "dry") == 2

    resumed = load_config(None, [*base, "optim.epochs=2"])
    result = fit(resumed, None, ["train"], ["val"], manifest_path=str(manifest))
    assert result.error is None
    hist = export_from_result(result, RunFolder(tmp_path / "e2"))["state"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3] and [h["stream_steps"] for h in hist] == [3, 1, 2]
    lines = read_rejects(str(cfg.output_path / "rejects.jsonl"), unique=False)
    assert Counter(r["epoch"] for r in lines) == {0: 8, 1: 8, 2: 8}  # the resume decoded epoch 3 only
