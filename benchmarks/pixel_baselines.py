"""Pixel-level baselines against SPLAVU on one evaluation suite, written into docs/baselines.md:

    python benchmarks/pixel_baselines.py --adapter outputs/splavu-demo/adapter [--out outputs/pixel_baselines]
        [--doc docs/baselines.md] [--machine "2-core CPU sandbox"] [key=value ...]

Runs ``python -m splavu_ray.evaluate adapter=ADAPTER baselines=[downsample2,downsample4,blur,pixelate]
eval.inversion.enabled=true`` (every task, the inversion attack included, on the raw features, on each pixel
baseline's features and on f_A's), then writes the comparison table (rows raw, each baseline, SPLAVU) with the
command, the machine and the split into ``--doc``. Each baseline's own results.json, and its inversion grid,
land in ``--out/baselines/NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("downsample2", "downsample4", "blur", "pixelate")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", required=True, help="an exported f_A (e.g. outputs/splavu-demo/adapter)")
    p.add_argument("--out", default="outputs/pixel_baselines")
    p.add_argument("--doc", default=str(ROOT / "docs" / "baselines.md"))
    p.add_argument("--machine", default="2-core CPU sandbox", help="where it ran, for the doc")
    p.add_argument("--train-command", default="python -m splavu_ray.train",
                   help="the command that trained --adapter, for the doc")
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated subset of "
                   + ",".join(BASELINES))
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides for the evaluate command")
    args = p.parse_args(argv)
    args.baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    if not args.baselines or set(args.baselines) - set(BASELINES):
        p.error(f"--baselines: choose from {','.join(BASELINES)}")
    return args


def document(args, cmd: list[str], results: dict, table: str, seconds: float) -> str:
    rec = results.get("reconstruction", {})
    priv = results.get("privacy", {})
    shown = " ".join(c if " " not in c else repr(c) for c in cmd[1:])
    return f"""# Pixel-level baselines against SPLAVU

Classic anonymization changes the pixels (lower resolution, blur, a mosaic) before any model sees them;
SPLAVU leaves the pixels alone and changes the frozen encoder's features. This page puts both through the
same evaluation suite: each pixel baseline transforms every decoded frame (`splavu_ray/data/pixel_ops.py`,
`data.pixel`), the frozen encoder embeds the result into a feature store of its own, and every task runs on
those features exactly as on SPLAVU's (f_A the identity). The threat model behind the privacy columns is in
[privacy.md](privacy.md); lower privacy, inversion and bias numbers are better, higher utility numbers are.

Rows: **raw** (the encoder on the frames as decoded), then the baselines run here
({', '.join(args.baselines)}; of: **downsample2/4**, average-pooled by 2 or 4 and scaled back up;
**blur**, Gaussian, sigma `data.pixel.blur_sigma` = 3% of the short side; **pixelate**,
`data.pixel.pixelate_blocks` = 8 mosaic blocks across the short side), then **SPLAVU (f_A)** (the
adapter's features). Not here yet: blackening the person region (needs person masks from the data) and a
learned pixel anonymizer.

Measured on the {args.machine}, {time.strftime('%Y-%m-%d')}, scored on the test splits (`data.test_split`,
`data.privacy_test_split`, each task's test split); {seconds:.0f} s for the command below. The adapter came
from `{args.train_command}`. The inversion columns are the feature-inversion attack (decoder trained on
the privacy train split): for the SPLAVU row, per metric, the worse of its transfer and adaptive
settings (`{rec.get('worst_setting', 'n/a')}` gave the higher cMAP here), for the baselines a decoder trained on their own features
(they have no secret to adapt to). The attribute attacker on real frames reaches
{rec.get('cmap_real', float('nan')):.2f} cMAP on the real test frames; chance is
{priv.get('cmap_chance', float('nan')):.2f}.

```bash
python {shown}
```

{table}

Each baseline's full results (and its inversion grid) are in `{args.out}/baselines/NAME/`; the plot of
privacy against each utility column, one point per row, is `{args.out}/baselines.png`.
"""


def main(argv=None) -> int:
    args = parse_args(argv)
    cmd = [sys.executable, "-m", "splavu_ray.evaluate", f"adapter={args.adapter}",
           f"baselines=[{','.join(args.baselines)}]", "eval.inversion.enabled=true", f"output_dir={args.out}",
           *args.overrides]
    t0 = time.time()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), check=False)
    if proc.returncode:
        return proc.returncode
    seconds = time.time() - t0
    out = Path(args.out) if Path(args.out).is_absolute() else ROOT / args.out
    results = json.loads((out / "results.json").read_text())
    table = (out / "baselines.md").read_text().strip()
    shown = ["python", "benchmarks/pixel_baselines.py", "--adapter", args.adapter, "--out", args.out,
             *(["--baselines", ",".join(args.baselines)] if args.baselines != list(BASELINES) else []),
             *args.overrides]
    Path(args.doc).write_text(document(args, shown, results, table, seconds))
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
