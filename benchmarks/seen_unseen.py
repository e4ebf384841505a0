"""Seen vs unseen tasks (the paper's Table 4) on the built-in data, in one command:

    python benchmarks/seen_unseen.py --seen ar --w-lc 100 0 [--out outputs/seen_unseen] [key=value ...]

Trains f_A with Ray Train + DeepSpeed (the cached path of ``python -m splavu_ray.train``) once per
``--w-lc`` value, with L_T* made of the SEEN tasks only (any subset of ar, tad, ad; the others get
weight 0), then evaluates ALL three tasks on raw vs anonymized features with fresh heads: action top-1
(linear probe), TAD mAP@tIoU 0.3:0.1:0.7 and anomaly frame-level AUC, plus the privacy attacker's cMAP.
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


def evaluate_all(cfg, adapter, store, pstore) -> dict:
    """Raw vs anonymized scores of every task, each with a freshly trained head."""
    from splavu_ray.anomaly import evaluate_anomaly
    from splavu_ray.evaluate import anonymize, probe_scores
    from splavu_ray.metrics import top1
    from splavu_ray.probes import attack
    from splavu_ray.tad import evaluate_tad

    d, ev = cfg.data, cfg.eval
    tr, te = store.load(d.train_split), store.load(d.test_split)
    ptr, pte = pstore.load(d.privacy_train_split), pstore.load(d.privacy_test_split)
    out = {}
    for tag, f in (("raw", lambda x: x), ("anonymized", lambda x: anonymize(adapter, x))):
        out[f"ar_{tag}"] = top1(probe_scores(cfg, f(tr.stacked_clips()), tr.action_ids, f(te.stacked_clips()),
                                             len(tr.actions)), te.action_ids)
        out[f"cmap_{tag}"] = attack(f(ptr.first_static()), ptr.attribute_matrix(), f(pte.first_static()),
                                    pte.attribute_matrix(), list(ptr.attributes), "mlp", ev.attacker_epochs,
                                    ev.attacker_lr, seed=cfg.seed).cmap
    tad, ad = evaluate_tad(cfg, adapter, store), evaluate_anomaly(cfg, adapter, store)
    out.update(tad_raw=tad["map_raw"], tad_anonymized=tad["map_anonymized"],
               ad_raw=ad["auc_raw"], ad_anonymized=ad["auc_anonymized"])
    return out


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
    from splavu_ray.adapter import load_adapter
    from splavu_ray.config import CONFIG_DIR, ConfigError, load_config
    from splavu_ray.datasets import resolve_manifests
    from splavu_ray.features import ensure_features
    from splavu_ray.train import init_ray
    from splavu_ray.trainer import export_from_result, fit

    out_dir = Path(args.out).resolve()
    try:
        base = load_config(args.config or CONFIG_DIR / "demo.yaml", args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if base.ray.address is None and not os.environ.get("RAY_ADDRESS"):
        import ray

        from splavu_ray.trainer import worker_env

        # A Ray of our own ("local"): never join a cluster another job happens to run on this machine.
        env = worker_env(base)
        os.environ.update({k: v for k, v in env.items() if k not in os.environ})
        ray.init(address="local", include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=True)
    init_ray(base)
    manifests = resolve_manifests(base)
    store = ensure_features(base, manifests["main"])
    pstore = store if manifests["privacy"] == manifests["main"] else ensure_features(base, manifests["privacy"])
    results = {"seen": seen, "command": " ".join(["python benchmarks/seen_unseen.py", *(argv or sys.argv[1:])]),
               "runs": []}
    for w_lc in args.w_lc:
        t0 = time.time()
        name = f"seen-{'-'.join(seen)}-wlc{w_lc:g}"
        cfg = load_config(args.config or CONFIG_DIR / "demo.yaml", [
            *args.overrides, f"run_name={name}", f"output_dir={out_dir / name}", f"loss.w_lc={w_lc}",
            *(f"loss.w_{t}={1.0 if t in seen else 0.0}" for t in TASKS)])
        cfg.save()
        result = fit(cfg, store.root, [cfg.data.train_split], [cfg.data.val_split])
        if result.error:
            raise RuntimeError(f"training {name} failed: {result.error}")
        exported = export_from_result(result, cfg.output_path)
        adapter = load_adapter(exported.get("best_adapter") or exported["adapter"])
        scores = evaluate_all(cfg, adapter, store, pstore)
        results["runs"].append({"w_lc": w_lc, "run": name, "scores": scores, "seconds": round(time.time() - t0, 1)})
        print(f"[seen_unseen] {name}: {json.dumps(scores)}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    md = table(results, seen)
    (out_dir / "table.md").write_text(md + "\n")
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
