"""Feature extraction: the frozen backbone over a manifest through Ray Data, into a feature store.

    python -m splavu_ray.features [--config FILE] [key=value ...] [--manifest M] [--out DIR]

The job itself is splavu_ray.distributed.feature_job (a Ray Data pipeline: the manifest read by Ray Data,
decoded in CPU tasks, embedded in backbone actors, each shard written by a worker straight to the store,
local or s3://; re-runs skip finished shards; bad files listed in the store's ``rejects.jsonl``); what one
row becomes is splavu_ray.data.frames (decode) + splavu_ray.models.embedder (embed).
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, load_config
from .data.sources import resolve_manifests
from .distributed.feature_job import extract_features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in demo)")
    parser.add_argument("--manifest", help="manifest to extract (default: data.dataset, or the built-in data)")
    parser.add_argument("--out", help="feature store folder or URI (default: under data.cache_dir)")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("overrides", nargs="*", help="dotted key=value config overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest = args.manifest or resolve_manifests(cfg)["main"]
    store = extract_features(cfg, manifest, args.out, shard_size=args.shard_size)
    print(json.dumps({"store": store.root, "rows": store.meta["num_rows"], "rejects": store.meta["rejects"],
                      "dim": store.meta["dim"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
