"""The selection split (eval.score_on=val): what sweeps and recipe searches score on never touches test."""

import json

import pytest
from test_suite import FAST, prepare
from toy import make_toy_store

from splavu_ray.config import ConfigError, load_config
from splavu_ray.data.feature_store import FeatureStore
from splavu_ray.evaluate import main
from splavu_ray.evaluation.selection import in_holdout, selection_config, split_rows
from splavu_ray.evaluation.suite import EvalPlan, evaluate_run
from splavu_ray.models.adapter import AnonymizingAdapter


def test_holdout_is_a_stable_share_of_the_rows_whatever_their_order(tmp_path):
    uris = [f"/v/{i}.mp4" for i in range(4000)]
    share = sum(in_holdout(u, 0.25) for u in uris) / len(uris)
    assert 0.22 < share < 0.28
    split = make_toy_store(tmp_path / "s", n_train=80, dim=8).load("train")
    fit, held = split_rows(split, 0.25)
    assert len(fit) + len(held) == 80 and {r["uri"] for r in fit.rows}.isdisjoint(r["uri"] for r in held.rows)
    assert [len(c) for c in fit.clips] == [len(c) for c in (split.clips[i] for i, r in enumerate(split.rows)
                                                               if r in fit.rows)]
    reversed_split = split.__class__(split.rows[::-1], split.clips[::-1], split.static[::-1], dim=8)
    assert {r["uri"] for r in split_rows(reversed_split, 0.25)[1].rows} == {r["uri"] for r in held.rows}


def test_selection_config_points_every_task_away_from_test():
    cfg = selection_config(load_config(None, []))
    d, e = cfg.data, cfg.eval
    assert (d.train_split, d.test_split) == ("train", "val")
    assert (d.privacy_train_split, d.privacy_test_split) == ("privacy_train@fit", "privacy_train@holdout")
    assert (e.tad.train_split, e.tad.test_split) == ("tad_train@fit", "tad_train@holdout")
    assert (e.anomaly.train_split, e.anomaly.test_split) == ("anomaly_train@fit", "anomaly_train@holdout")
    assert e.reid.split == "val"
    with pytest.raises(ConfigError, match="score_on"):
        load_config(None, ["eval.score_on=holdout"])


class Recording(FeatureStore):
    """A feature store that remembers which splits were read."""

    read: list

    def load(self, *splits):
        self.read.extend(splits)
        return super().load(*splits)


def test_evaluate_run_on_val_never_reads_test(tmp_path):
    make_toy_store(tmp_path / "s", n_train=64, n_val=28, n_test=42, dim=32)
    store = Recording.open(str(tmp_path / "s"))
    store.read = []
    cfg = load_config(None, [*FAST, "eval.score_on=val"])
    plan = EvalPlan(["privacy", "action", "bias", "reid"], {t: "main" for t in ("privacy", "action", "bias", "reid")})
    res = evaluate_run(cfg, AnonymizingAdapter(32, "mlp", layers=1), plan, {"main": store})
    assert res["scored_on"] == "val" and "bias" in res["skipped"] and "bias" not in res
    assert set(store.read) == {"privacy_train", "train", "val"}
    held = sum(in_holdout(f"/toy/privacy_train/{i}.mp4", 0.25) for i in range(64))
    assert res["sizes"] == {"privacy_train": 64 - held, "privacy_test": held, "action_train": 64, "action_test": 28}
    assert res["reid"]["gallery"] + res["reid"]["probes"] == 28


def test_evaluate_cli_scores_on_the_selection_split(tmp_path, capsys):
    tmp_path, common, adapter, _ = prepare(tmp_path, n_val=21)
    out = tmp_path / "eval"
    assert main([f"adapter={adapter}", *common, f"output_dir={out}", "eval.score_on=val"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["scored_on"] == "val" and res["sizes"]["action_test"] == 21
    assert (out / "results.md").read_text().startswith("Scored on the selection split")
    assert main([f"adapter={adapter}", *common, f"output_dir={tmp_path / 'test'}"]) == 0
    assert json.loads((tmp_path / "test" / "results.json").read_text())["scored_on"] == "test"
