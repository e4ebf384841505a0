"""CPU seconds of the evaluation's intervals (eval.bootstrap) at benchmark-sized test sets, on synthetic
predictions (the cost depends on the sizes only, not on the values):

- privacy: 5000 test images x 7 attributes, 11 attackers (mlp, linear, 9 bank heads), both views: the paper-MLP
  cMAP and the worst-attacker cMAP (the max over attackers per resample);
- TAD: 213 test videos x 100 detections, 20 classes, both views (plus the one-off greedy matching);
- anomaly: 290 test videos x 300 windows (frame groups), both views.

    timeout 900 python benchmarks/bootstrap_cost.py [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from splavu_ray.metrics.bootstrap import bootstrap, weighted_auc, weighted_cmap
from splavu_ray.metrics.detection import detection_matches, weighted_map


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=1000)
    b = ap.parse_args().resamples
    rng = np.random.default_rng(0)

    n, k, attackers = 5000, 7, 11
    y = (rng.random((n, k)) < 0.3).astype(int)
    probs = [rng.random((n, k)) for _ in range(attackers)]
    stats = {}
    for view in ("raw", "anonymized"):
        stats[f"worst_{view}"] = lambda c: np.max([weighted_cmap(p, y, c) for p in probs], axis=0)
        stats[f"mlp_{view}"] = lambda c: weighted_cmap(probs[0], y, c)
    t0 = time.process_time()
    bootstrap(n, stats, b, 0)
    print(f"privacy, {n} images x {k} attributes x {attackers} attackers, 2 views: "
          f"{time.process_time() - t0:.1f} CPU s")

    videos = 213
    gt_seg = [np.sort(rng.uniform(0, 200, (10, 1)), 0) + np.array([[0.0, 5.0]]) for _ in range(videos)]
    gt_lab = [rng.integers(0, 20, 10) for _ in range(videos)]
    dets = []
    for _ in range(videos):
        s = rng.uniform(0, 200, 100)
        dets.append({"segments": np.stack([s, s + rng.uniform(1, 10, 100)], 1), "scores": rng.random(100),
                     "labels": rng.integers(0, 20, 100)})
    t0 = time.process_time()
    matches = detection_matches(gt_seg, gt_lab, dets)
    t1 = time.process_time()
    bootstrap(videos, {v: (lambda c: weighted_map(matches, c)) for v in ("raw", "anonymized")}, b, 0)
    print(f"TAD, {videos} videos x 100 detections x 20 classes, 2 views: {time.process_time() - t1:.1f} CPU s "
          f"(+ {t1 - t0:.1f} s matching, once per detector)")

    units, windows = 290, 300
    e = units * windows
    elements = (rng.random(e), rng.integers(0, 2, e), np.repeat(np.arange(units), windows), np.full(e, 16.0))
    t0 = time.process_time()
    bootstrap(units, {v: (lambda c: weighted_auc(*elements, c)) for v in ("raw", "anonymized")}, b, 0)
    print(f"anomaly, {units} videos x {windows} windows, 2 views: {time.process_time() - t0:.1f} CPU s")


if __name__ == "__main__":
    main()
