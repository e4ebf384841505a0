"""The Ray Data clip pipeline: the decoder UDF without Ray, then the dataset on a 2-node local cluster."""

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import videos as V

from splavu_ray.data.decode import REASONS
from splavu_ray.data.manifest import write_manifest
from splavu_ray.distributed import clip_stream as pipeline
from splavu_ray.distributed.clip_stream import (
    ClipDecoder,
    clip_dataset,
    iter_train_batches,
    read_rejects,
    reject_counts,
    source_table,
    stream_blocks,
)

CLIP, SIZE, FRAMES = 8, 32, 24  # 24-frame videos: a train clip of 8 frames has 17 possible starts
NUM_GOOD = 10  # even: streaming_split(2, equal=True) then drops nothing


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A manifest of NUM_GOOD good videos (various sizes, codecs, lengths) and one file of each bad kind."""
    d = tmp_path_factory.mktemp("pipeline")
    good = []
    for i in range(NUM_GOOD):
        kw = [dict(), dict(height=48, width=32), dict(codec="mjpeg", ext="avi"), dict(num_frames=5)][i % 4]
        ext = kw.pop("ext", "mp4")
        good.append(V.write_video(d / f"good{i}.{ext}", num_frames=kw.pop("num_frames", FRAMES), **kw))
    src = V.write_video(d / "src.mkv", num_frames=FRAMES)
    bad = {
        "missing": d / "missing.mp4",
        "empty": V.write_empty(d / "empty.mp4"),
        "not_video": V.write_text(d / "text.mp4"),
        "corrupt": V.write_corrupt(d / "corrupt.mp4"),
        "truncated": V.write_truncated(src, d / "truncated.mkv", 0.6),  # its first frames decode fine
        "unreadable": V.make_unreadable(d / "folder.mp4"),
        "no_frames": V.write_no_frames(d / "none.mkv"),
        "wrong_media": V.write_image(d / "still.png"),  # a still image in a media=video row
        "too_short": V.write_video(d / "two.mp4", num_frames=2),  # < data.min_frames (half a clip: 4)
    }
    rows = [{"uri": str(p), "dataset": "t", "split": "train", "media": "video", "action": f"a{i % 3}",
             "action_id": i % 3} for i, p in enumerate(good)]
    rows += [{"uri": str(p), "dataset": "t", "split": "train", "media": "video"} for p in bad.values()]
    rows.append({"uri": str(good[0]), "dataset": "t", "split": "val", "media": "video"})
    manifest = d / "m.parquet"
    write_manifest(str(manifest), rows)
    return {"dir": d, "manifest": str(manifest), "good": good, "bad": bad}


def manifest_batch(manifest, splits=("train",)):
    table = source_table(manifest, list(splits))
    return {name: np.asarray(col.to_pylist()) for name, col in zip(table.column_names, table.columns)}


def starts(clips):
    """First frame index of each train clip, read from the pattern brightness (videos.py)."""
    return V.frame_index(clips[:, 0])


# --------------------------------------------------------------------------- the UDF, no Ray


def test_decoder_gives_fixed_shape_rows_of_consecutive_frames(media, tmp_path):
    batch = manifest_batch(media["manifest"])
    dec = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, seed=0, rejects_path=str(tmp_path / "r.jsonl"))
    out = dec(batch)
    assert out["clips"].shape == (NUM_GOOD, CLIP, SIZE, SIZE, 3) and out["clips"].dtype == np.uint8
    assert out["static"].shape == (NUM_GOOD, 2, SIZE, SIZE, 3) and out["static"].dtype == np.uint8
    assert out["row_index"].tolist() == list(range(NUM_GOOD))
    assert out["action_id"].tolist() == [i % 3 for i in range(NUM_GOOD)]
    # the 5-frame videos (>= min_frames, half a clip) are kept, padded to a clip with their last frame, and counted
    assert out["padded"].tolist() == [CLIP - 5 if i % 4 == 3 else 0 for i in range(NUM_GOOD)]
    assert dec.padded == sum(i % 4 == 3 for i in range(NUM_GOOD))
    idx = V.frame_index(out["clips"])  # (videos, frames)
    for i, row in enumerate(idx):
        length = 5 if i % 4 == 3 else FRAMES
        expected = np.minimum(np.arange(CLIP) + row[0], length - 1)  # short videos repeat their last frame
        assert row.tolist() == expected.tolist(), i
    static = V.frame_index(out["static"])
    assert (static[:, 0] != static[:, 1]).all()  # two DIFFERENT frames of each (long) video

    ev = ClipDecoder(mode="eval", clip_len=CLIP, num_clips=3, static_k=4, size=SIZE)(batch)
    assert ev["clips"].shape == (NUM_GOOD, 3, CLIP, SIZE, SIZE, 3) and ev["static"].shape == (NUM_GOOD, 4, SIZE, SIZE, 3)
    assert V.frame_index(ev["clips"][0, :, 0]).tolist() == [0, 8, 16]  # evenly spaced, first to last


def test_each_bad_kind_is_dropped_with_its_reason_and_a_rejects_line(media, tmp_path):
    path = tmp_path / "rejects.jsonl"
    dec = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, rejects_path=str(path))
    out = dec(manifest_batch(media["manifest"]))
    assert out["row_index"].tolist() == list(range(NUM_GOOD)) and (dec.ok, dec.rejected) == (NUM_GOOD, 9)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["uri"]: r["reason"] for r in lines} == {str(p): k for k, p in media["bad"].items()}
    assert set(media["bad"]) == set(REASONS)
    assert all(r["split"] == "train" and r["row_index"] >= NUM_GOOD for r in lines)
    dec(manifest_batch(media["manifest"]))  # a second epoch meets them again ...
    assert len(read_rejects(str(path), unique=False)) == 18
    assert all(r["detail"] for r in lines)  # every reject says why
    assert {r["count"] for r in read_rejects(str(path))} == {2}  # ... read back once each, counted
    assert reject_counts(str(path)) == {"rejected": 9, "by_reason": {k: 1 for k in REASONS}}

    kept = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, keep_partial=True)(manifest_batch(media["manifest"]))
    assert len(kept["row_index"]) == NUM_GOOD + 1  # the truncated file's valid frames


def test_train_clips_are_seeded_by_row_and_epoch(media):
    batch = manifest_batch(media["manifest"])
    dec = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, seed=3)
    first = starts(dec(batch)["clips"])
    c0, _, _ = dec.decode({k: v[0] for k, v in batch.items()}, epoch=0)
    assert starts(ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, seed=3)(batch)["clips"]).tolist() == first.tolist()
    later = [starts(np.stack([dec.decode({k: v[i] for k, v in batch.items()}, epoch=e)[0]
                              for i in range(NUM_GOOD)])) for e in (0, 1)]
    assert later[0].tolist() == first.tolist()  # outside Ray Data the execution index is 0
    assert later[1].tolist() != later[0].tolist()
    assert c0.shape == (CLIP, SIZE, SIZE, 3)


def test_decoder_seeds_each_row_by_its_epoch_column_and_looks_rows_up_in_the_manifest(media, tmp_path):
    table = source_table(media["manifest"], ["train"])  # 10 good + 7 bad rows
    path = tmp_path / "r.jsonl"
    dec = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, seed=3, rejects_path=str(path), manifest=table)
    n = table.num_rows
    out = dec({"row_index": np.tile(table["row_index"].to_numpy(), 2), "epoch": np.repeat([5, 6], n)})
    assert out["row_index"].tolist() == list(range(NUM_GOOD)) * 2
    assert out["epoch"].dtype == np.int64 and out["epoch"].tolist() == [5] * NUM_GOOD + [6] * NUM_GOOD
    full = manifest_batch(media["manifest"])
    ref = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, seed=3)
    got = {}
    for e in (5, 6):  # the same clips as decoding the full manifest rows with that epoch
        want = np.stack([ref.decode({k: v[i] for k, v in full.items()}, epoch=e)[0] for i in range(NUM_GOOD)])
        got[e] = starts(out["clips"][out["epoch"] == e]).tolist()
        assert got[e] == starts(want).tolist()
    assert got[5] != got[6]
    assert Counter(r["epoch"] for r in read_rejects(str(path), unique=False)) == {5: 9, 6: 9}
    # full rows may carry the epoch column too (no manifest needed)
    with_epoch = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, seed=3)({**full, "epoch": np.full(n, 6)})
    assert starts(with_epoch["clips"]).tolist() == got[6] and set(with_epoch["epoch"].tolist()) == {6}
    with pytest.raises(ValueError, match="no manifest"):
        ref({"row_index": np.array([0]), "epoch": np.array([0])})
    with pytest.raises(KeyError, match="not in the manifest"):
        dec({"row_index": np.array([0, 999]), "epoch": np.array([0, 0])})


def test_stream_source_is_epoch_major_with_every_row_once_per_epoch_in_its_own_order(monkeypatch):
    rows = np.arange(22, dtype=np.int64) * 3 + 1  # manifest positions of the selected rows
    runs = {tuple(rows[i : i + 4].tolist()) for i in range(0, 22, 4)}  # 6 runs of up to 4 rows
    blocks = stream_blocks(rows, 4, seed=0, first_epoch=2, epochs=3)
    assert len(blocks) == 18 and {tuple(b["row_index"].to_pylist()) for b in blocks} == runs  # a run per block
    table = pa.concat_tables(blocks)
    index, epoch = table["row_index"].to_numpy(), table["epoch"].to_numpy()
    assert table.schema.field("epoch").type == pa.int64() and epoch.tolist() == sorted(epoch.tolist())
    orders = {e: index[epoch == e].tolist() for e in (2, 3, 4)}
    assert all(sorted(o) == rows.tolist() for o in orders.values())  # every row once per epoch
    assert len({tuple(o) for o in orders.values()}) == 3  # each epoch its own order ...
    again = pa.concat_tables(stream_blocks(rows, 4, seed=0, first_epoch=3, epochs=1))
    assert again["row_index"].to_pylist() == orders[3]  # ... a function of (seed, epoch): offsets agree
    other = pa.concat_tables(stream_blocks(rows, 4, seed=1, first_epoch=3, epochs=1))
    assert other["row_index"].to_pylist() != orders[3]
    monkeypatch.setattr(pipeline, "MAX_SOURCE_BLOCKS", 4)  # huge manifests: several whole runs per block
    capped = stream_blocks(rows, 4, seed=0, first_epoch=2, epochs=3)
    assert len(capped) == 4 and pa.concat_tables(capped)["row_index"].to_pylist() == index.tolist()


def test_unexpected_errors_drop_the_row_until_the_decoder_looks_broken(media, monkeypatch, tmp_path):
    batch = manifest_batch(media["manifest"])
    dec = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, rejects_path=str(tmp_path / "r.jsonl"))
    real = dec.decode
    monkeypatch.setattr(dec, "decode", lambda row, epoch=None: (_ for _ in ()).throw(KeyError("boom"))
                        if int(row["row_index"]) == 1 else real(row, epoch))
    assert 1 not in dec(batch)["row_index"].tolist()
    assert reject_counts(str(tmp_path / "r.jsonl"))["by_reason"]["error"] == 1
    broken = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE)
    monkeypatch.setattr(broken, "decode", lambda row, epoch=None: (_ for _ in ()).throw(KeyError("bug")))
    with pytest.raises(RuntimeError, match="unexpected decode errors and no success"):
        broken(batch)


def test_rejects_go_to_object_storage_as_one_part_per_actor(media, monkeypatch):
    """A shared-nothing cluster: rejects_path s3://...; each decoder (re)writes its own part, all are read back."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from s3 import client, s3_server, use

    with s3_server() as endpoint:
        use(monkeypatch, endpoint)
        client(endpoint).create_bucket(Bucket="runs")
        uri = "s3://runs/r1/rejects.jsonl"
        for pid in (101, 102):  # two actors (processes) of the stream
            monkeypatch.setattr(pipeline.os, "getpid", lambda pid=pid: pid)
            dec = ClipDecoder(mode="train", clip_len=CLIP, size=SIZE, rejects_path=uri)
            dec(manifest_batch(media["manifest"]))
            dec(manifest_batch(media["manifest"]))  # its part holds both epochs
        parts = client(endpoint).list_objects_v2(Bucket="runs", Prefix="r1/rejects.jsonl.parts/")["Contents"]
        assert len(parts) == 2
        assert len(read_rejects(uri, unique=False)) == 36
        assert {r["count"] for r in read_rejects(uri)} == {4}
        assert reject_counts(uri) == {"rejected": 9, "by_reason": {k: 1 for k in REASONS}}
        assert read_rejects("s3://runs/nothing/rejects.jsonl") == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="test"), "unknown mode"), (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(static_k=11), "static_k must be in"), (dict(rejects_path="hdfs://b/r.jsonl"), "a POSIX path or an s3:// / gs:// URI"),
    (dict(epochs=0), r"epochs must be an int >= 1"), (dict(epochs=1.5), r"epochs must be an int >= 1"),
    (dict(mode="eval", epochs=2), "multi-epoch stream is for mode 'train'"),
    (dict(epochs=2, first_epoch=-1), r"first_epoch must be an int >= 0"),
    (dict(first_epoch=3), "first_epoch needs epochs"),
])
def test_bad_arguments_fail_before_ray_starts(media, kwargs, message):
    with pytest.raises(ValueError, match=message):
        clip_dataset(media["manifest"], ["train"], size=SIZE, **kwargs)
    with pytest.raises(ValueError, match=r"no rows in split\(s\) \['nope'\]; it has \['train', 'val'\]"):
        clip_dataset(media["manifest"], ["nope"], size=SIZE)


# --------------------------------------------------------------------------- through Ray, 2 nodes


@pytest.fixture(scope="module")
def two_nodes():
    """A 2-node local cluster (ray.cluster_utils.Cluster): two raylets with 1 CPU each. It cannot share
    the module-scoped ``ray_session`` of other modules, so any Ray left running is shut down first."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def dataset(media, tmp_path, **kw):
    args = dict(mode="train", clip_len=CLIP, size=SIZE, seed=0, decode_workers=2, batch_size=2,
                rejects_path=str(tmp_path / "rejects.jsonl"))
    return clip_dataset(media["manifest"], ["train"], **{**args, **kw})


def by_row(rows):
    return {int(r): int(s) for r, s in zip(rows["row_index"], starts(rows["clips"]))}


@pytest.mark.slow
def test_eval_rows_and_train_batches_through_ray(two_nodes, media, tmp_path):
    ds = dataset(media, tmp_path, mode="eval", num_clips=2, decode_workers=1)
    batches = list(iter_train_batches(ds, batch_size=4))
    assert len(batches) == NUM_GOOD // 4  # drop_last: equal step counts on every worker
    clips = batches[0]["clips"]
    assert tuple(clips.shape) == (4, 2, CLIP, SIZE, SIZE, 3) and str(clips.dtype) == "torch.uint8"
    assert tuple(batches[0]["static"].shape) == (4, 2, SIZE, SIZE, 3)
    assert str(batches[0]["row_index"].dtype) == "torch.int64" and str(batches[0]["action_id"].dtype) == "torch.int64"
    for b in batches:  # eval clips are deterministic: evenly spaced starts of each (long) video
        for row, c in zip(b["row_index"].tolist(), b["clips"].numpy()):
            if row % 4 != 3:
                assert V.frame_index(c[:, 0]).tolist() == [0, FRAMES - CLIP]
    assert reject_counts(str(tmp_path / "rejects.jsonl")) == {"rejected": 9, "by_reason": {k: 1 for k in REASONS}}


@pytest.mark.slow
def test_every_clip_arrives_exactly_once_per_epoch_across_two_nodes(two_nodes, media, tmp_path):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def consume(shard, epochs):
        seen = []
        for _ in range(epochs):
            rows = {"row_index": [], "clips": []}
            for b in shard.iter_batches(batch_size=3, batch_format="numpy"):
                rows["row_index"].append(b["row_index"]), rows["clips"].append(b["clips"])
            seen.append({k: np.concatenate(v) for k, v in rows.items()})
        return ray.get_runtime_context().get_node_id(), seen

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    shards = dataset(media, tmp_path).streaming_split(2, equal=True)
    results = ray.get([consume.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                       .remote(shard, 2) for shard, node in zip(shards, nodes)])
    assert {node for node, _ in results} == set(nodes)  # one consumer per node
    per_epoch = []
    for epoch in range(2):
        parts = [seen[epoch] for _, seen in results]
        assert [len(p["row_index"]) for p in parts] == [NUM_GOOD // 2] * 2  # equal shards
        rows = {k: np.concatenate([p[k] for p in parts]) for k in ("row_index", "clips")}
        assert sorted(rows["row_index"].tolist()) == list(range(NUM_GOOD)), epoch  # exactly once
        assert rows["clips"].shape == (NUM_GOOD, CLIP, SIZE, SIZE, 3) and rows["clips"].dtype == np.uint8
        per_epoch.append(by_row(rows))
    assert per_epoch[0] != per_epoch[1]  # epochs differ in clip starts ...
    again = dataset(media, tmp_path).take_batch(100, batch_format="numpy")
    assert by_row(again) == per_epoch[0]  # ... reproducibly: rng of (seed, row, execution index)
    # Bad files: dropped by the actors on both nodes, every epoch, each with its reason.
    records = read_rejects(str(tmp_path / "rejects.jsonl"))
    assert {r["reason"]: r["count"] for r in records} == {k: 3 for k in REASONS}
    assert reject_counts(str(tmp_path / "rejects.jsonl")) == {"rejected": 9, "by_reason": {k: 1 for k in REASONS}}


@pytest.mark.slow
def test_multi_epoch_stream_is_one_execution_with_every_clip_once_per_epoch(two_nodes, media, tmp_path):
    rows = dataset(media, tmp_path, epochs=3, first_epoch=2).take_all()
    pairs = Counter((int(r["row_index"]), int(r["epoch"])) for r in rows)
    assert pairs == {(i, e): 1 for i in range(NUM_GOOD) for e in (2, 3, 4)}  # exactly once per epoch
    clip = {e: {int(r["row_index"]): int(V.frame_index(r["clips"][0])) for r in rows if r["epoch"] == e}
            for e in (2, 3, 4)}
    assert clip[2] != clip[3] != clip[4] != clip[2]  # the clips differ between epochs ...
    again = dataset(media, tmp_path, epochs=1, first_epoch=3, rejects_path=None).take_all()
    assert {int(r["row_index"]): int(V.frame_index(r["clips"][0])) for r in again} == clip[3]  # ... reproducibly
    # Bad files: dropped in every epoch of the stream, by the one actor pool of its one execution.
    lines = read_rejects(str(tmp_path / "rejects.jsonl"), unique=False)
    assert Counter((r["reason"], r["epoch"]) for r in lines) == {(k, e): 1 for k in REASONS for e in (2, 3, 4)}
    assert len({(r["host"], r["pid"]) for r in lines}) <= 2  # decode_workers=2 actors served all 3 epochs


@pytest.mark.slow
def test_multi_epoch_stream_split_between_two_consumers_with_one_iterator_each(two_nodes, media, tmp_path):
    import ray

    @ray.remote(num_cpus=0)
    def consume(shard):  # ONE pass over the shard for all epochs, as a training worker does
        got = [(b["row_index"], b["epoch"]) for b in shard.iter_batches(batch_size=3, batch_format="numpy")]
        return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])

    shards = dataset(media, tmp_path, epochs=2, rejects_path=None).streaming_split(2, equal=True)
    parts = ray.get([consume.remote(shard) for shard in shards])
    assert len(parts[0][0]) == len(parts[1][0]) == NUM_GOOD  # equal shards over the whole stream
    pairs = Counter(zip(np.concatenate([p[0] for p in parts]).tolist(), np.concatenate([p[1] for p in parts]).tolist()))
    assert pairs == {(i, e): 1 for i in range(NUM_GOOD) for e in (0, 1)}
