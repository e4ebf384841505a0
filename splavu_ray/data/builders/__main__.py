"""CLI: ``python -m splavu_ray.data.builders NAME ROOT OUT.parquet [--split 1] [--fps 30] ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence

from . import BUILDERS, BuilderError, build


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m splavu_ray.data.builders",
        description="Turn a standard dataset layout into a splavu_ray manifest (layouts: docs/datasets.md).",
    )
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("root", help="dataset root folder")
    parser.add_argument("out", help="manifest to write (.parquet; local path, s3:// or gs://)")
    # Options default to None so that only those given reach the builder (which rejects foreign ones).
    parser.add_argument("--split", type=int, help="ucf101/hmdb51 (and pa_hmdb51, vp_hmdb51, vp_ucf101): official split 1, 2 or 3 (default 1)")
    parser.add_argument("--fps", type=float, help="ucf_crime: frames per second of the annotation (default 30)")
    parser.add_argument("--val-split", help="thumos14: split of the validation videos (default train)")
    parser.add_argument("--protocol", help="ntu60: xsub (default) or xview")
    parser.add_argument("--genders", help="ntu60, toyota_smarthome: subject-gender CSV (default ROOT/**/subject_gender.csv)")
    parser.add_argument("--allow-missing", action="store_true", default=None, help="skip media files that are absent")
    parser.add_argument("--split-file", help="pa_hmdb51: '<video> <train|test>' lines instead of HMDB51's split")
    parser.add_argument("--aggregate", help="pa_hmdb51: frame ranges -> video label, any (default) or majority")
    parser.add_argument("--labels", help="vp_hmdb51/vp_ucf101: the label table (default ROOT/**/vp_<name>.csv)")
    parser.add_argument("--unseen-only", action="store_true", default=None,
                        help="casia_b: only the unseen test subjects 075-124")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    names = ("split", "fps", "val_split", "protocol", "genders", "allow_missing")
    names += ("split_file", "aggregate", "labels")
    names += ("unseen_only",)
    kw = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    try:
        manifest = build(args.name, args.root, args.out, **kw)
    except BuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    per_split = Counter(manifest.table["split"].to_pylist())
    splits = ", ".join(f"{s}={n}" for s, n in sorted(per_split.items()))
    missing = f", {len(manifest.missing)} missing" if manifest.missing else ""
    print(f"{args.name}: {len(manifest)} rows ({splits}), {len(manifest.actions)} actions{missing} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
