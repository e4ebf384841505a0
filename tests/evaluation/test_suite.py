"""Evaluation suite: results.json sections, the Table 1 markdown, figures, and the evaluate CLI as a
user runs it (adapter=PATH + overrides) on a prepared feature store."""

import json
import os
import shutil

import pytest
import torch
from toy import make_toy_store

from splavu_ray.config import load_config
from splavu_ray.data.feature_store import default_store_root
from splavu_ray.data.manifest import write_manifest
from splavu_ray.evaluate import main
from splavu_ray.evaluation import suite
from splavu_ray.evaluation.report import TableColumn
from splavu_ray.evaluation.suite import evaluate_features, report_table
from splavu_ray.evaluation.task import EvalTask
from splavu_ray.models.adapter import AnonymizingAdapter, save_adapter

DIM = 192  # width of backbone.source=random:tiny, so the CLI's width check passes before any work
FAST = ["eval.privacy.attacker_epochs=8", "eval.action.probe_epochs=8", "eval.privacy.attacker_lr=0.01",
        "eval.action.probe_lr=0.01", "eval.privacy.bank_lrs=[0.001, 0.01]", "eval.privacy.bank_weight_decays=[0.0]"]


class NewTask(EvalTask):
    """A task plug-in from outside the package: its own section and column."""

    name = "newtask"
    columns = (TableColumn("new task mAP", "newtask", "map", True),)


def test_table_has_a_column_per_task_and_takes_new_ones():
    results = {"privacy": {"cmap_worst_raw": 80.0, "cmap_worst_anonymized": 60.0, "cmap_worst_chance": 50.0},
               "action": {"top1_raw": 90.0, "top1_anonymized": 88.2}, "newtask": {"map_raw": 50.0, "map_anonymized": 49.0}}
    table = report_table(results).splitlines()
    assert table[0].startswith("|  | privacy cMAP, worst attacker (lower=better) | action top-1 (higher=better) |")
    assert table[2:5] == ["| raw | 80.00 | 90.00 |", "| anonymized | 60.00 | 88.20 |",
                          "| relative change | -25.0% | -2.0% |"]
    assert table[5] == "| chance | 50.00 |  |"
    saved = dict(suite.TASKS)
    try:
        suite.register_task(NewTask())
        assert "| raw | 80.00 | 90.00 | 50.00 |" in report_table(results)
    finally:
        suite.TASKS.clear()
        suite.TASKS.update(saved)


class Blind(AnonymizingAdapter):
    """A perfect (and useless) anonymizer: every feature becomes zero. Raw and anonymized columns must
    then differ exactly as far as the signal goes: anonymized privacy at chance."""

    def forward(self, x, padding_mask=None):
        return torch.zeros_like(x)


def test_evaluate_features_all_tasks(tmp_path):
    store = make_toy_store(tmp_path / "s", n_train=64, n_test=42, dim=32)
    cfg = load_config(None, FAST)
    adapter = Blind(32, "mlp", layers=1)
    train, test = store.load("train"), store.load("test")
    res = evaluate_features(cfg, adapter, store.load("privacy_train"), store.load("privacy_test"), train, test,
                            bias=(train, test), reid=test)
    p = res["privacy"]
    assert set(p["attackers"]) == {"mlp", "linear", "bank/lr0.001_wd0", "bank/lr0.01_wd0"}
    for tag in ("raw", "anonymized"):
        cmaps = {k: v[tag]["cmap"] for k, v in p["attackers"].items()}
        assert p[f"cmap_worst_{tag}"] == max(cmaps.values()) and p[f"worst_attacker_{tag}"] in cmaps
        assert p[f"cmap_{tag}"] == cmaps["mlp"]  # the paper's attacker keeps its keys
        assert p["per_attribute"]["attr_p"][tag] == max(v[tag]["per_attribute"]["attr_p"] for v in p["attackers"].values())
    assert p["cmap_worst_raw"] > 90 > p["cmap_chance"] + 30  # the toy attribute is easy to attack
    assert p["cmap_worst_anonymized"] == pytest.approx(p["cmap_chance"])
    a = res["action"]
    assert a["top1_raw"] > 2 * a["top1_chance"] > a["top1_anonymized"] and a["clips_per_video"] == 2
    b = res["bias"]
    assert set(b["protocols"]) == {"ntu_bias_f", "ntu_bias_m", "natural"}
    f = b["protocols"]["ntu_bias_f"]
    assert f["test_group_share"] == {"female": 0.5, "male": 0.5} and f["train_group_share"]["male"] > 0.6
    assert b["gap_raw"] == f["raw"]["gap"] == pytest.approx(abs(f["raw"]["per_group"]["female"] - f["raw"]["per_group"]["male"]))
    r = res["reid"]
    assert r["gallery"] + r["probes"] == 42 and r["subjects"] == 7 and 0 <= r["top1_anonymized"] <= 100
    assert set(res["timing_s"]) == {"privacy", "action", "bias", "reid"}


@pytest.fixture
def prepared(tmp_path):
    return prepare(tmp_path)


def prepare(tmp_path, n_val=4):
    """A manifest with a complete feature store where `python -m splavu_ray.evaluate` looks for it."""
    toy = make_toy_store(tmp_path / "toy", n_train=48, n_val=n_val, n_test=42, dim=DIM, clips=5)
    split = toy.load()
    manifest = tmp_path / "data.parquet"
    write_manifest(str(manifest), split.rows, split.actions, split.attributes)
    common = [f"data.dataset={manifest}", f"data.privacy_manifest={manifest}", "backbone.source=random:tiny",
              "backbone.pooling=mean", f"data.cache_dir={tmp_path / 'cache'}", *FAST]
    shutil.copytree(toy.root, default_store_root(load_config(None, common), str(manifest)))
    adapter = tmp_path / "adapter"
    torch.manual_seed(0)
    save_adapter(AnonymizingAdapter(DIM, layers=1, heads=4), adapter)
    return tmp_path, common, adapter, split


def test_cli_writes_results_table_and_figures(prepared, capsys):
    tmp_path, common, adapter, _ = prepared
    out = tmp_path / "eval"
    # main() is what `python -m splavu_ray.evaluate` runs; in-process saves the interpreter start-up.
    assert main([f"adapter={adapter}", *common, f"output_dir={out}"]) == 0
    stdout = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    for key in ("cmap_raw", "cmap_anonymized", "cmap_chance", "cmap_worst_raw", "cmap_worst_anonymized", "per_attribute"):
        assert key in res["privacy"]
    assert {"top1_raw", "top1_anonymized"} <= set(res["action"]) and "gap_anonymized" in res["bias"]
    assert res["reid"]["probes"] > 0 and res["run"]["adapter"] == str(adapter)
    # the tasks ran in a Ray task with one training worker's resources, not in this (the driver's) process
    where = res["timing"]["evaluation_task"]
    assert where["ray_task"] and where["pid"] != os.getpid() == where["driver_pid"]
    assert where["resources"].get("CPU") == 1.0 and "GPU" not in where["resources"]
    # every headline number has its 95% interval, its paired drop and its chance references
    assert res["bootstrap"]["resamples"] == 1000 and res["bootstrap"]["confidence"] == 0.95
    for section, key, chance in (("privacy", "cmap_worst", {"constant", "random_scores"}),
                                 ("privacy", "cmap", {"constant", "random_scores"}),
                                 ("action", "top1", {"uniform", "majority"}), ("bias", "gap", {"no_bias"}),
                                 ("reid", "top1", {"random_gallery_pick"})):
        unc = res[section]["intervals"][key]
        for tag in ("raw", "anonymized"):
            assert unc[tag][0] <= res[section][f"{key}_{tag}"] <= unc[tag][1]
        assert unc["drop"] == pytest.approx(res[section][f"{key}_raw"] - res[section][f"{key}_anonymized"])
        assert isinstance(unc["drop_excludes_zero"], bool) and unc["n"] > 0
        assert set(res[section]["chance_reference"][key]) == chance
    table = (out / "results.md").read_text()
    assert table.splitlines()[2].startswith("| raw |") and "relative change" in table and table in stdout + "\n"
    assert "drop beyond noise" in table and "random scores" in table and "percentile bootstrap" in table
    for png in ("privacy_utility.png", "per_attribute_ap.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.html").read_text()  # the page to look at: the same table, its plots embedded
    assert "privacy cMAP, worst attacker" in report and report.count("data:image/png;base64,") >= 2


def test_bad_inputs_fail_before_any_work(prepared, capsys):
    tmp_path, common, adapter, split = prepared
    out = tmp_path / "never"

    def fails(*args):
        assert main([*common, *args, f"output_dir={out}"]) == 2
        assert not out.exists()
        return capsys.readouterr().err

    narrow = save_adapter(AnonymizingAdapter(64, layers=1, heads=4), tmp_path / "narrow")
    assert "adapter width 64 does not match the feature width 192" in fails(f"adapter={narrow}")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(adapter, corrupt)
    (corrupt / "adapter.safetensors").write_bytes(b"\x00garbage")
    assert "not a readable safetensors file" in fails(f"adapter={corrupt}")
    assert "adapter=PATH" in fails()
    # A manifest without gender labels cannot serve the bias protocols that are asked for.
    no_gender = tmp_path / "no_gender.parquet"
    write_manifest(str(no_gender), [{**r, "gender": None} for r in split.rows], split.actions, split.attributes)
    err = fails(f"adapter={adapter}", f"eval.bias.manifest={no_gender}")
    assert "eval task 'bias'" in err and "lack a usable 'gender'" in err
    # ... and with eval.tasks unset, a manifest without subjects simply skips re-identification.
    no_attr = tmp_path / "no_attr.parquet"
    write_manifest(str(no_attr), [{**r, "private_attributes": []} for r in split.rows], split.actions, [])
    assert "no private-attribute labels" in fails(f"adapter={adapter}", f"data.privacy_manifest={no_attr}")


def test_cli_adds_tad_and_anomaly_columns_when_the_data_has_untrimmed_videos(prepared, capsys):
    import numpy as np
    from test_tad import untrimmed_rows

    from splavu_ray.data.feature_store import FeatureStore

    tmp_path, common, adapter, split = prepared
    # Without untrimmed videos both tasks are skipped, with the reason recorded.
    assert main([f"adapter={adapter}", *common, f"output_dir={tmp_path / 'plain'}"]) == 0
    skipped = json.loads((tmp_path / "plain" / "results.json").read_text())["skipped"]
    assert "segments" in skipped["tad"] and "anomalous" in skipped["anomaly"]
    # The same data plus tad_*/anomaly_* videos: a new manifest, its store = toy shard + untrimmed shard.
    rows = untrimmed_rows(np.random.default_rng(3), n=(12, 8), dim=DIM)
    manifest = tmp_path / "with_untrimmed.parquet"
    toy_root = str(tmp_path / "toy")
    FeatureStore(toy_root).write_shard(1, rows)
    store = FeatureStore.open(toy_root)
    store.write_meta({**store.meta, "num_shards": 2, "num_rows": store.meta["num_rows"] + len(rows), "clip_len": 16})
    full = FeatureStore.open(toy_root).load()
    write_manifest(str(manifest), full.rows, split.actions, split.attributes)
    cfg = [c.replace(str(tmp_path / "data.parquet"), str(manifest)) for c in common]
    shutil.copytree(toy_root, default_store_root(load_config(None, cfg), str(manifest)))
    out = tmp_path / "eval_all"
    assert main([f"adapter={adapter}", *cfg, f"output_dir={out}", "eval.tad.epochs=15", "eval.anomaly.epochs=15",
                 "eval.tad.hidden=16", "eval.anomaly.hidden=16"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["tad"]["map_raw"] <= 100 and 0 <= res["tad"]["map_anonymized"] <= 100
    assert 0 <= res["anomaly"]["auc_raw"] <= 100 and {"tad", "anomaly"} <= set(res["timing_s"])
    assert "tad" not in res.get("skipped", {})
    table = (out / "results.md").read_text()
    assert "TAD mAP" in table and "anomaly AUC" in table
    assert res["anomaly"]["chance_reference"]["auc"] == {"random_scores": 50.0}
    assert 0 < res["tad"]["map_chance"] == res["tad"]["chance_reference"]["map"]["random_detector"] < 100
    for section, key in (("tad", "map"), ("anomaly", "auc")):
        unc = res[section]["intervals"][key]
        assert unc["raw"][0] <= res[section][f"{key}_raw"] <= unc["raw"][1] and unc["n"] == 8


def test_the_evaluation_task_asks_for_one_training_workers_resources():
    from splavu_ray.distributed.evaluation_task import task_resources

    assert task_resources(load_config(None, ["scaling.cpus_per_worker=2"])) == {"num_cpus": 2.0, "num_gpus": 0.0}
    gpu = load_config(None, ["scaling.use_gpu=true", "scaling.gpus_per_worker=1", "scaling.accelerator_type=L4"])
    assert task_resources(gpu) == {"num_cpus": 1.0, "num_gpus": 1.0, "accelerator_type": "L4"}  # the same GPU model
