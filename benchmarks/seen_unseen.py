"""Seen vs unseen tasks (the paper's Table 4) on the built-in data, in one command:

    python benchmarks/seen_unseen.py --seen ar --w-lc 100 0 [--out outputs/seen_unseen] [key=value ...]

Trains f_A with Ray Train + DeepSpeed once per ``--w-lc`` value, through the run path of
``python -m splavu_ray.train`` (splavu_ray.distributed.run.train_and_evaluate), with L_T* made of the SEEN
tasks only (any subset of ar, tad, ad; the others get weight 0), then evaluates ALL three tasks on raw vs
anonymized features with fresh heads: action top-1 (linear probe), TAD mAP@tIoU 0.3:0.1:0.7 and anomaly
frame-level AUC, plus the paper's MLP attacker's cMAP. Each run's own results.json lands in --out/RUN.
Writes ``results.json`` and ``table.md`` into --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Run from a checkout without `pip install -e .`: the package and Ray's workers find splavu_ray here.
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

TASKS = ("ar", "tad", "ad")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seen", default="ar", help="comma-separated subset of ar,tad,ad trained on (default: ar)")
    p.add_argument("--w-lc", type=float, nargs="+", default=[100.0, 0.0], help="latent consistency weights to compare")
    p.add_argument("--config", default=None, help="base config (default: splavu_ray/configs/demo.yaml)")
    p.add_argument("--out", default="outputs/seen_unseen")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.epochs=10")
    args = p.parse_args(argv)
    seen = [t.strip() for t in args.seen.split(",") if t.strip()]
    bad = [t for t in seen if t not in TASKS]
    if bad or not seen:
        p.error(f"--seen must be a non-empty subset of {','.join(TASKS)}; got {args.seen!r}")
    return args, seen


def scores(results: dict) -> dict:
    """The numbers of the table from one run's results.json (each task with a freshly trained head)."""
    return {"ar_raw": results["action"]["top1_raw"], "ar_anonymized": results["action"]["top1_anonymized"],
            "cmap_raw": results["privacy"]["cmap_raw"], "cmap_anonymized": results["privacy"]["cmap_anonymized"],
            "tad_raw": results["tad"]["map_raw"], "tad_anonymized": results["tad"]["map_anonymized"],
            "ad_raw": results["anomaly"]["auc_raw"], "ad_anonymized": results["anomaly"]["auc_anonymized"]}


def table(results: dict, seen: list[str]) -> str:
    runs = results["runs"]
    head = ["task", "seen in training", "raw"] + [f"anonymized, w_LC={r['w_lc']:g}" for r in runs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = {"ar": "action top-1 (%)", "tad": "TAD mAP@0.3:0.7 (%)", "ad": "anomaly frame AUC (%)"}
    for t in TASKS:
        raw = runs[0]["scores"][f"{t}_raw"]
        cells = [f"{r['scores'][f'{t}_anonymized']:.1f} ({100 * r['scores'][f'{t}_anonymized'] / raw:.0f}% of raw)"
                 for r in runs]
        lines.append(f"| {names[t]} | {'yes' if t in seen else 'no'} | {raw:.1f} | " + " | ".join(cells) + " |")
    cm = [f"{r['scores']['cmap_anonymized']:.1f}" for r in runs]
    lines.append(f"| privacy cMAP (%, lower = more private) | - | {runs[0]['scores']['cmap_raw']:.1f} | " + " | ".join(cm) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args, seen = parse_args(argv)
    from splavu_ray.config import CONFIG_DIR, ConfigError, load_config
    from splavu_ray.data.sources import resolve_manifests
    from splavu_ray.distributed.feature_job import ensure_features
    from splavu_ray.distributed.run import train_and_evaluate
    from splavu_ray.distributed.session import connect
    from splavu_ray.evaluation.suite import plan_evaluation
    from splavu_ray.run_folder import RunFolder

    out_dir = Path(args.out).resolve()
    # Every task is scored (the paper's MLP attacker is the privacy column), whichever ones were seen.
    evaluation = ["eval.tasks=[privacy, action, tad, anomaly]", "eval.privacy.attackers=[mlp]"]
    try:
        base = load_config(args.config or CONFIG_DIR / "demo.yaml", [*args.overrides, *evaluation])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    connect(base)  # a Ray of our own unless RAY_ADDRESS / ray.address names one
    manifests = resolve_manifests(base)
    plan = plan_evaluation(base, manifests)
    store = ensure_features(base, manifests["main"])
    stores = {manifests["main"]: store, manifests["privacy"]: ensure_features(base, manifests["privacy"])}
    results = {"seen": seen, "command": " ".join(["python benchmarks/seen_unseen.py", *(argv or sys.argv[1:])]),
               "runs": []}
    for w_lc in args.w_lc:
        t0 = time.time()
        name = f"seen-{'-'.join(seen)}-wlc{w_lc:g}"
        cfg = load_config(args.config or CONFIG_DIR / "demo.yaml", [
            *args.overrides, *evaluation, f"run_name={name}", f"output_dir={out_dir / name}", f"loss.w_lc={w_lc}",
            *(f"loss.w_{t}={1.0 if t in seen else 0.0}" for t in TASKS)])
        run = train_and_evaluate(cfg, RunFolder.of(cfg), plan, stores, store.root)
        results["runs"].append({"w_lc": w_lc, "run": name, "scores": scores(run), "seconds": round(time.time() - t0, 1)})
        print(f"[seen_unseen] {name}: {json.dumps(results['runs'][-1]['scores'])}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    md = table(results, seen)
    (out_dir / "table.md").write_text(md + "\n")
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
