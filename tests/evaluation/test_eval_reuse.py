"""Evaluation that reuses its work: every attacker in one pass, and results of the same inputs kept in the process
(the raw view every sweep trial scores again) -- both without changing a number."""

import numpy as np
import pytest

from splavu_ray import probes
from splavu_ray.config import Config
from splavu_ray.evaluation import reuse
from splavu_ray.evaluation.privacy import run_attackers
from splavu_ray.evaluation.task import probe_scores


def attributes(n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    x[:, 0] += 2.0 * y[:, 0]
    return x, y


@pytest.fixture(autouse=True)
def fresh_memory():
    reuse.clear()
    yield
    reuse.clear()


def small_cfg() -> Config:
    return Config.model_validate({"eval": {"privacy": {"attacker_epochs": 3, "bank_lrs": [1e-3, 1e-2],
                                                       "bank_weight_decays": [0.0, 0.1]},
                                           "action": {"probe_c_grid": [0.1, 1.0]}}})


def test_attackers_in_one_pass_equal_each_attacker_trained_alone():
    (x, y), (xt, yt) = attributes(80, 0), attributes(40, 1)
    names = ["a", "b", "c"]
    lrs, wds = probes.grid([1e-3, 1e-2], [0.0, 0.1])
    alone = [probes.attack_bank(x, y, xt, yt, names, [1e-3], [0.0], "mlp", 3, None, 5, 16),
             probes.attack_bank(x, y, xt, yt, names, [1e-3], [0.0], "linear", 3, None, 5, 16),
             probes.attack_bank(x, y, xt, yt, names, lrs, wds, "mlp", 3, None, 5, 16)]
    together = probes.attack_groups(x, y, xt, yt, names, [("mlp", [1e-3], [0.0]), ("linear", [1e-3], [0.0]),
                                                          ("mlp", lrs, wds)], 3, None, 5, 16)
    assert [list(r) for r in together] == [list(r) for r in alone]
    for a, b in zip(alone, together):
        for name in a:
            np.testing.assert_array_equal(a[name].probs, b[name].probs)
            assert a[name].cmap == b[name].cmap and a[name].per_attribute == b[name].per_attribute
    with pytest.raises(ValueError, match="pair up"):
        probes.attack_groups(x, y, xt, yt, names, [("mlp", [1e-3, 1e-2], [0.0])])


def test_privacy_attackers_are_reused_for_the_same_inputs_only():
    cfg = small_cfg()
    (x, y), (xt, yt) = attributes(60, 0), attributes(30, 1)
    names = ["a", "b", "c"]
    first = run_attackers(cfg, x, y, xt, yt, names)
    assert list(first) == ["mlp", "linear", "bank/lr0.001_wd0", "bank/lr0.001_wd0.1", "bank/lr0.01_wd0",
                           "bank/lr0.01_wd0.1"]
    again = run_attackers(cfg, x, y, xt, yt, names)
    assert reuse.counts() == {"hits": 1, "misses": 1}
    for name in first:
        np.testing.assert_array_equal(first[name].probs, again[name].probs)
    again["mlp"].probs[:] = 0  # a caller's change does not reach the kept result
    assert run_attackers(cfg, x, y, xt, yt, names)["mlp"].cmap == first["mlp"].cmap
    # other features (the anonymized view), another seed or other settings: computed, not reused
    run_attackers(cfg, x + 1e-3, y, xt, yt, names)
    run_attackers(cfg.model_copy(update={"seed": 1}), x, y, xt, yt, names)
    more = small_cfg()
    more.eval.privacy.attacker_epochs = 4
    run_attackers(more, x, y, xt, yt, names)
    assert reuse.counts() == {"hits": 2, "misses": 4}


def test_action_probe_scores_are_reused_and_equal():
    cfg = small_cfg()
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(size=(24, 3, 8)).astype(np.float32), rng.normal(size=(9, 3, 8)).astype(np.float32)
    ytr = np.arange(24) % 3
    fresh = probes.action_scores(xtr, ytr, xte, 3, c_grid=[0.1, 1.0])
    np.testing.assert_array_equal(probe_scores(cfg, xtr, ytr, xte, 3), fresh)
    np.testing.assert_array_equal(probe_scores(cfg, xtr, ytr, xte, 3), fresh)
    assert reuse.counts() == {"hits": 1, "misses": 1}


def test_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(reuse, "MAX_ENTRIES", 2)
    for i in range(4):
        reuse.reused(reuse.content_key("k", np.full(3, i)), lambda i=i: i)
    assert reuse.reused(reuse.content_key("k", np.full(3, 3)), lambda: -1) == 3  # kept
    assert reuse.reused(reuse.content_key("k", np.full(3, 0)), lambda: -1) == -1  # evicted
    # keys tell dtype and shape apart, not only bytes
    assert reuse.content_key(np.zeros(4, np.float32)) != reuse.content_key(np.zeros(2, np.float64))
    assert reuse.content_key(np.zeros((2, 2))) != reuse.content_key(np.zeros(4))
