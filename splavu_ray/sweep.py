"""Privacy/utility sweeps: ``python -m splavu_ray.sweep sweeps/NAME.yaml [key=value ...]``.

Ray Tune runs the trials, Optuna (multi-objective, NSGA-II by default) proposes them: minimise the
worst-case attacker cMAP on anonymized features, maximise one or several task metrics. Each trial is
a real training run (a TorchTrainer, the same fit -> export -> evaluate path as
``python -m splavu_ray.train``) on the feature store, which is extracted once for the whole sweep.

The Optuna study lives in durable storage in the output folder (SQLite by default, or an RDB URL);
running the same command again continues the study: finished trials are kept, trials cut short by
the interruption are marked failed and replaced. Outputs (output_dir): trials.csv, pareto.csv,
summary.json, pareto.png and the frontier trials' adapters in pareto_adapters/.

Each trial's driver holds one ``splavu_driver`` (the head's custom resource) and no CPU; its Train workers
and its evaluation (a Ray task) hold ``base.scaling``'s CPUs/GPUs. Trials at once: ``resources.max_concurrent``,
else the cluster at its maxima (the autoscaler's node types), never fewer because workers are not up yet.
With ``base.ray.storage_path`` an s3:// / gs:// URI the trials' files live under
``<storage_path>/<sweep name>/trials/<trial id>/`` (docs/sweeps.md).

Overrides apply to the sweep file; training-config keys go under ``base.`` (``base.optim.epochs=2``).
"""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError
from .distributed.tune import run_sweep
from .search.spec import load_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="sweep file, e.g. sweeps/quick.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the sweep file, e.g. n_trials=4 "
                        "base.optim.epochs=2")
    args = parser.parse_args(argv)
    try:
        spec, base = load_sweep(args.sweep, args.overrides)
        run_sweep(spec, base)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
