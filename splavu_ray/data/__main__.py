"""``python -m splavu_ray.data COMMAND ...``: data tools.

To add a subcommand, write ``def register(subparsers) -> None`` that adds a parser and sets
``func=handler`` (``handler(args) -> int`` exit code) with ``set_defaults``, and append it to
:data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .manifest import ManifestError


def _validate(args: argparse.Namespace) -> int:
    from .validate import default_rejects_path, validate_manifest

    report = validate_manifest(
        args.manifest,
        rejects_path=args.rejects or default_rejects_path(args.manifest),
        workers=args.workers,
        strict=not args.allow_partial,
        executor="thread" if args.threads else "process",
        progress=None,
        clip_len=args.clip_len,
        min_frames=args.min_frames,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 1 if report.num_rejected else 0


def register_validate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="probe every file of a manifest; report and write the rejects",
        description="Decode every row of MANIFEST; print counts per reason and write the rejected rows "
        "(row, uri, reason, detail). Exit status: 0 all files ok, 1 some rejected, 2 unusable manifest.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="Parquet manifest (local path or s3:// / gs:// URI)")
    p.add_argument("--rejects", metavar="FILE", help="rejects file, .parquet or JSON lines "
                   "(default: MANIFEST's name with .rejects.jsonl)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--workers", type=int, default=None, help="parallel probes (default: CPU count)")
    p.add_argument("--threads", action="store_true", help="probe in threads instead of processes")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept files that decode only partly (truncated), as warnings")
    p.add_argument("--clip-len", type=int, default=16, help="frames per clip (data.clip_len): shorter videos are "
                   "padded, reported as warnings")
    p.add_argument("--min-frames", type=int, default=None, help="shorter videos are rejected as too_short "
                   "(data.min_frames; default: half a clip)")
    p.set_defaults(func=_validate)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [register_validate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.data", description="splavu_ray data tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
