"""What a sweep trial's evaluation costs, before and after it reuses its work, and that its numbers stay the same.

    python benchmarks/eval_reuse.py --store STORE --adapter A [--adapter B ...] [--threads 1]

The two tasks every ``sweeps/loss_weights.yaml`` trial scores (privacy: paper MLP + linear + 3x3 bank of
attackers; action: the logistic probe with its C chosen by 3-fold cross-validation), on the feature
store's privacy and action splits (the sweep's selection split, ``eval.score_on=val``), for each adapter
in turn as successive trials of one process would:

- ``separate``: each attacker trained in its own pass and nothing kept between trials (the old path:
  ``probes.attack`` twice + ``probes.attack_bank``, ``probes.action_scores``);
- ``reused``: all attackers in one pass (``probes.attack_groups``) and the results of the same inputs kept in
  the process (``splavu_ray.evaluation.reuse``: from the second trial on, the raw view is not recomputed).

Process CPU seconds per trial and task (torch and the BLAS pools at ``--threads``, what a one-CPU Ray
worker gets), and whether every attacker's test probabilities and every probe score are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="feature store of the sweep's base config")
    parser.add_argument("--adapter", action="append", required=True, help="adapter export folder (one per trial)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="sweep-file key=value overrides")
    args = parser.parse_intermixed_args()

    from splavu_ray import probes
    from splavu_ray.data.feature_store import FeatureStore
    from splavu_ray.evaluation import reuse
    from splavu_ray.evaluation.privacy import attack_inputs, run_attackers
    from splavu_ray.evaluation.selection import SelectionStore, selection_config
    from splavu_ray.evaluation.task import cpu_threads, fit_kw, probe_scores, views
    from splavu_ray.models.adapter import load_adapter
    from splavu_ray.run_folder import RunFolder
    from splavu_ray.search.spec import load_sweep, trial_config

    _, base = load_sweep("sweeps/loss_weights.yaml", args.overrides)
    cfg = trial_config(base, {}, RunFolder("/tmp/eval_reuse"), "eval-reuse")
    store = FeatureStore.open(args.store)
    if cfg.eval.score_on == "val":  # what a trial scores on (splavu_ray.evaluation.selection)
        cfg, store = selection_config(cfg), SelectionStore(store, cfg.eval.selection_holdout)
    d, ev, a = cfg.data, cfg.eval.privacy, cfg.eval.action
    split = d.test_split
    ptr, pte = store.load(d.privacy_train_split), store.load(d.privacy_test_split)
    atr, ate = store.load(d.train_split), store.load(split)
    names, ytr, yte = list(ptr.attributes), ptr.attribute_matrix(), pte.attribute_matrix()
    kw = fit_kw(cfg)

    def separate(xtr, xte):
        out = {k: probes.attack(xtr, ytr, xte, yte, names, k, ev.attacker_epochs, ev.attacker_lr,
                                hidden=ev.attacker_hidden, seed=cfg.seed, **kw) for k in ("mlp", "linear")}
        lrs, wds = probes.grid(ev.bank_lrs, ev.bank_weight_decays)
        out.update({f"bank/{k}": v for k, v in probes.attack_bank(xtr, ytr, xte, yte, names, lrs, wds, ev.bank_kind,
                                                                   ev.attacker_epochs, ev.attacker_hidden, cfg.seed,
                                                                   **kw).items()})
        return out

    def probe_separate(xtr, xte):
        return probes.action_scores(xtr, atr.action_ids, xte, len(atr.actions), a.probe_epochs, a.probe_lr, cfg.seed,
                                    **kw, kind=a.probe, c=a.probe_c, c_grid=a.probe_c_grid)

    rows, kept = [], {}
    with cpu_threads(args.threads):
        for path in args.adapter:
            adapter = load_adapter(path)
            for way in ("separate", "reused"):
                times = {"privacy": 0.0, "action": 0.0}
                for tag, f in views(adapter):
                    xtr, xte = attack_inputs(ptr, f), attack_inputs(pte, f)
                    t0 = time.process_time()
                    res = separate(xtr, xte) if way == "separate" else run_attackers(cfg, xtr, ytr, xte, yte, names)
                    times["privacy"] += time.process_time() - t0
                    ctr, cte = f(atr.stacked_clips()), f(ate.stacked_clips())
                    t0 = time.process_time()
                    scores = probe_separate(ctr, cte) if way == "separate" else \
                        probe_scores(cfg, ctr, atr.action_ids, cte, len(atr.actions))
                    times["action"] += time.process_time() - t0
                    kept.setdefault((path, tag), []).append((res, scores))
                rows.append({"adapter": path, "way": way, **{f"{k}_cpu_s": round(v, 2) for k, v in times.items()},
                             "reuse": reuse.counts() if way == "reused" else None})
                print(json.dumps(rows[-1]), flush=True)
    same = all(np.array_equal(r1[k].probs, r2[k].probs) and list(r1) == list(r2) and np.array_equal(s1, s2)
               for (r1, s1), (r2, s2) in kept.values() for k in r1)
    print(json.dumps({"identical_results": same, "threads": args.threads, "split": split,
                      "loadavg": [round(x, 1) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
