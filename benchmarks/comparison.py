"""The paper's comparison on the built-in data: pixel-level anonymization against SPLAVU, one table, into docs.

    python benchmarks/comparison.py --adapter outputs/splavu-demo/best_adapter [--pixel-anonymizer PATH]
        [--out outputs/comparison] [--doc docs/baselines.md] [--machine "2-core CPU sandbox"] [--fresh]
        [key=value ...]

Rows: raw, downsample2, downsample4, blur, pixelate, blacken, the learned pixel anonymizer (f_P, when
``--pixel-anonymizer`` names one; left out with a note otherwise) and SPLAVU (f_A). Columns: privacy (worst
attacker, paper MLP), inversion (PSNR, attribute cMAP of the reconstructions), action top-1, bias gap,
re-id, TAD, anomaly: every task the suite runs, each value with its 95% bootstrap interval, and the chance
references in the last row. Every row is one ``python -m splavu_ray.evaluate`` run with
``eval.inversion.enabled=true`` (scored on the test splits):

- raw and SPLAVU: the adapter on the frames as decoded (its raw and anonymized views);
- a pixel baseline or f_P: ``data.pixel.transform=NAME`` (its own feature store, extracted when missing) with
  an identity adapter, so its features are evaluated exactly as raw ones are (``python -m splavu_ray.evaluate
  baselines=[...]`` does the same in one process; here each row is a process of its own so that it can be
  reused).

Resumable: each row's results land in ``--out/rows/NAME/`` with the command that made them; a rerun with the
same command for a row reuses them (``--fresh`` recomputes), and feature stores are cached as always. So
adding ``--pixel-anonymizer`` later costs only its own row. Writes ``--doc`` (the table, the commands, the
machine, the split, each row's time) and the privacy/utility plot beside it (``--plot``); what follows the
marker line ``NOTES`` in an existing ``--doc`` (the reading of the numbers) is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIXEL_ROWS = ("downsample2", "downsample4", "blur", "pixelate", "blacken")
COMPUTE_ORDER = ("blacken", "downsample4", "blur", "pixelate", "downsample2")  # the table's order is PIXEL_ROWS
LEARNED = "learned pixel anonymizer (f_P)"
# How the learned pixel anonymizer is scored: a pixel transform like the others, the trained f_P applied to
# every decoded frame before the encoder. {path} is --pixel-anonymizer.
LEARNED_OVERRIDES = ("data.pixel.transform=learned", "data.pixel.anonymizer={path}")
FIRST = ("privacy", "reconstruction")
NOTES = "<!-- notes: kept by benchmarks/comparison.py -->"  # the table's leading sections: privacy, then the inversion attack


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", required=True, help="an exported f_A (e.g. outputs/splavu-demo/best_adapter)")
    p.add_argument("--pixel-anonymizer", help="a trained f_P for the learned row (left out when not given)")
    p.add_argument("--learned-override", action="append", default=None, metavar="KEY=VALUE",
                   help="config overrides that score --pixel-anonymizer, {path} standing for it (repeatable; "
                   f"default: {' '.join(LEARNED_OVERRIDES)})")
    p.add_argument("--out", default="outputs/comparison")
    p.add_argument("--doc", default=str(ROOT / "docs" / "baselines.md"))
    p.add_argument("--plot", default=None, help="the privacy/utility plot (default: beside --doc, baselines.png)")
    p.add_argument("--machine", default="2-core CPU sandbox", help="where it ran, for the doc")
    p.add_argument("--train-command", default="python -m splavu_ray.train",
                   help="the command that trained --adapter, for the doc")
    p.add_argument("--baselines", default=",".join(PIXEL_ROWS), help="comma-separated subset of " + ",".join(PIXEL_ROWS))
    p.add_argument("--fresh", action="store_true", help="recompute every row instead of reusing finished ones")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides for every evaluate command")
    args = p.parse_args(argv)
    args.baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    if set(args.baselines) - set(PIXEL_ROWS):
        p.error(f"--baselines: choose from {','.join(PIXEL_ROWS)}")
    args.learned_override = args.learned_override or list(LEARNED_OVERRIDES)
    args.plot = args.plot or str(Path(args.doc).with_suffix(".png"))
    return args


def _abs(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else ROOT / path


def identity_adapter(adapter_path: str, out: Path) -> Path:
    """An exported f_A that is exactly the identity, as wide as ``adapter_path``'s (the pixel rows' adapter)."""
    from splavu_ray.models.adapter import AnonymizingAdapter, load_adapter, save_adapter

    folder = out / "identity_adapter"
    dim = load_adapter(adapter_path).dim
    if not (folder / "adapter.json").exists() or load_adapter(folder).dim != dim:
        # zero-initialised residual MLP blocks: the identity, as evaluate's own baselines use
        save_adapter(AnonymizingAdapter(dim, "mlp", layers=1), folder, {"note": "identity (pixel baseline rows)"})
    return folder


def run_row(name: str, cmd: list[str], folder: Path, fresh: bool) -> tuple[dict, float, bool]:
    """(results.json, seconds, reused) of one row: reused when ``folder`` holds results made by ``cmd``."""
    record = folder / "comparison_row.json"
    if not fresh and record.exists() and (folder / "results.json").exists():
        done = json.loads(record.read_text())
        if done.get("command") == cmd[1:]:
            print(f"[comparison] {name}: reusing {folder} ({done['seconds']:.0f} s when made)", flush=True)
            return json.loads((folder / "results.json").read_text()), float(done["seconds"]), True
    print(f"[comparison] {name}: {' '.join(shlex.quote(c) for c in cmd[1:])}", flush=True)
    t0 = time.time()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), check=False)
    if proc.returncode:
        raise SystemExit(f"[comparison] {name} failed (exit {proc.returncode}); rerun to resume from this row")
    seconds = time.time() - t0
    record.write_text(json.dumps({"command": cmd[1:], "seconds": round(seconds, 1),
                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))
    return json.loads((folder / "results.json").read_text()), seconds, False


def evaluate_cmd(adapter: str | Path, folder: Path, extra: list[str], overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "splavu_ray.evaluate", f"adapter={adapter}", "eval.inversion.enabled=true",
            f"output_dir={folder}", *extra, *overrides]


def document(args, shown: str, results: dict, rows: dict[str, dict], times: dict[str, float], table: str,
             learned_note: str | None) -> str:
    rec = results.get("reconstruction", {})
    priv = results.get("privacy", {})
    store = (results.get("run") or {}).get("feature_store") or "?"
    timing = ", ".join(f"{name} {s / 60:.1f} min" for name, s in times.items())
    learned = learned_note or ("the learned pixel anonymizer's row comes from `--pixel-anonymizer "
                               f"{args.pixel_anonymizer}`.")
    left = [b for b in PIXEL_ROWS if b not in args.baselines]
    missing = (f" Not run here: {', '.join(left)} (`--baselines` named a subset; the command without it runs "
               "them and reuses the rows below)." if left else "")
    return f"""# Pixel-level anonymization against SPLAVU

Classic anonymization changes the pixels before any model sees them (lower resolution, blur, a mosaic, the
person painted black); a learned pixel anonymizer (f_P) is trained to do the same; SPLAVU leaves the pixels
alone and changes the frozen encoder's features (f_A). This page puts all of them through one evaluation
suite: a pixel method transforms every decoded frame (`splavu_ray/data/pixel_ops.py`, `data.pixel`), the
frozen encoder embeds the result into a feature store of its own, and every task runs on those features
exactly as on SPLAVU's. The threat model behind the privacy columns is in [privacy.md](privacy.md); lower
privacy, inversion, bias and re-id numbers are better, higher action, TAD and anomaly numbers are.

Rows: **raw** (the encoder on the frames as decoded); **downsample2/4** (average-pooled by 2 or 4 and scaled
back up); **blur** (Gaussian, sigma `data.pixel.blur_sigma` = 3% of the short side); **pixelate**
(`data.pixel.pixelate_blocks` = 8 mosaic blocks across the short side); **blacken** (every pixel the person
covers set to black, from the person masks the built-in data writes beside each video and image,
`data/person_masks.py`, cut to the decoded frames); the **learned pixel anonymizer** when given; and
**SPLAVU (f_A)** (the adapter's features; its raw row is the first one). Here {learned}{missing}

Measured on the {args.machine}, {time.strftime('%Y-%m-%d')}, scored on the **test** splits
(`data.test_split`, `data.privacy_test_split`, each task's test split) of the built-in data as the current
generator writes it (feature store of the raw row: `{store}`). The adapter came from
`{args.train_command}`; the demo recipe was chosen on these test splits (README, *Evaluation*), so the
SPLAVU row checks the code rather than proving the method. The inversion columns are the feature-inversion
attack (a decoder trained on the privacy train split, scored on the privacy test images): for SPLAVU, per
metric, the worse of its transfer and adaptive settings (`{rec.get('worst_setting', 'n/a')}` gave the higher
cMAP here); for a pixel row, a decoder trained on that row's own features to rebuild the original frames.
The attribute attacker reaches {rec.get('cmap_real', float('nan')):.2f} cMAP on the real test frames; chance is
{priv.get('cmap_chance', float('nan')):.2f}. Time per row (feature extraction of a missing store included): {timing}.

```bash
{shown}
```

{table}

Brackets: 95% percentile bootstrap intervals over the test videos (images for the privacy columns); the
chance row holds each column's chance references. Each row's full results (and its inversion grid) are in
`{args.out}/rows/NAME/`; the plot of worst-attacker privacy against each other column, one point per row,
is [{Path(args.plot).name}]({Path(args.plot).name}).
"""


def main(argv=None) -> int:
    args = parse_args(argv)
    out = _abs(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    identity = identity_adapter(args.adapter, out)
    t_all = time.time()
    times: dict[str, float] = {}
    main_folder = out / "rows" / "splavu"
    results, times["raw + SPLAVU"], _ = run_row("raw + SPLAVU", evaluate_cmd(args.adapter, main_folder, [], args.overrides),
                                                main_folder, args.fresh)
    rows: dict[str, dict] = {}
    for name in sorted(args.baselines, key=COMPUTE_ORDER.index):
        folder = out / "rows" / name
        rows[name], times[name], _ = run_row(
            name, evaluate_cmd(identity, folder, [f"data.pixel.transform={name}"], args.overrides), folder, args.fresh)
    rows = {name: rows[name] for name in PIXEL_ROWS if name in rows}  # the table's order
    learned_note = None
    if args.pixel_anonymizer:
        folder = out / "rows" / "learned"
        extra = [o.replace("{path}", args.pixel_anonymizer) for o in args.learned_override]
        rows[LEARNED], times["learned"], _ = run_row(LEARNED, evaluate_cmd(identity, folder, extra, args.overrides),
                                                     folder, args.fresh)
    else:
        learned_note = ("the learned pixel anonymizer's row is left out: no trained f_P was given "
                        "(`--pixel-anonymizer PATH`, an output of `python -m splavu_ray.train` with a pixel config).")
        print(f"[comparison] note: {learned_note}", flush=True)

    from splavu_ray.evaluation.baselines import comparison_plot, comparison_table
    from splavu_ray.evaluation.suite import table_columns

    table = comparison_table(results, rows, table_columns(), first=FIRST)
    plot = comparison_plot(results, rows, table_columns(), _abs(args.plot))
    shown = ["python", "benchmarks/comparison.py", "--adapter", args.adapter, "--out", args.out,
             *(["--pixel-anonymizer", args.pixel_anonymizer] if args.pixel_anonymizer else []),
             *(f"--learned-override={o}" for o in args.learned_override
               if args.pixel_anonymizer and args.learned_override != list(LEARNED_OVERRIDES)),
             *(["--baselines", ",".join(args.baselines)] if args.baselines != list(PIXEL_ROWS) else []),
             *args.overrides]
    doc = document(args, " ".join(shlex.quote(c) for c in shown), results, rows, times, table, learned_note)
    old = Path(args.doc).read_text() if Path(args.doc).exists() else ""
    if NOTES in old:  # the reading of the numbers, written by hand below the marker, survives a rerun
        doc += "\n" + NOTES + old.split(NOTES, 1)[1]
    Path(args.doc).write_text(doc)
    (out / "comparison.md").write_text(table + "\n")
    print("\n" + table + "\n")
    print(f"wrote {args.doc}" + (f" and {plot}" if plot else "") + f" ({time.time() - t_all:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
