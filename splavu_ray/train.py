"""Train the anonymizing adapter: ``python -m splavu_ray.train [--config FILE] [key=value ...]``.

With no arguments: joins the Ray cluster named by RAY_ADDRESS (as under ``ray job submit``) or starts a
local one, generates the built-in synthetic privacy dataset, extracts features with the pretrained
tiny V-JEPA 2, trains f_A with the SPLAVU objective on Ray Train + DeepSpeed, evaluates raw vs
anonymized features and writes ``output_dir/results.json``. Running the same command again with the
same run_name resumes from the last checkpoint. The path itself is splavu_ray.distributed.run.
"""

from __future__ import annotations

import argparse
import sys

from .config import CONFIG_DIR, Config, ConfigError, load_config
from .distributed.run import run
from .run_folder import RunFolder
from .training.preflight import check_inputs


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in demo, splavu_ray/configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.epochs=5")
    args = parser.parse_args(argv)
    return args, load_config(args.config or CONFIG_DIR / "demo.yaml", args.overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        _, cfg = parse_args(argv)
        check_inputs(cfg)
        run(cfg)
        if uri := RunFolder.of(cfg).publish():  # output_dir=s3://...: the staged run folder goes up
            print(f"[splavu] run folder uploaded to {uri}", flush=True)
    except ConfigError as exc:  # bad config, or e.g. evaluation labels missing, found before training starts
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
