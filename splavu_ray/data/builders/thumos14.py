"""THUMOS14 (temporal action detection): per-class '<Class>_val.txt' / '<Class>_test.txt' segment files."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ._common import BuilderError, BuiltManifest, Collector, Tree, check_choice, parse, records

NAME = "thumos14"
LAYOUT = (
    "<root>/annotation/<Class>_val.txt and <root>/annotation_test/<Class>_test.txt "
    "('<video> <start_s> <end_s>', Ambiguous_* ignored); videos <root>/validation/video_validation_*.mp4 "
    "and <root>/test/video_test_*.mp4"
)


def build(root: str, out_path: str, *, val_split: str = "train", allow_missing: bool = False) -> BuiltManifest:
    """``val_split``: where the validation videos go; the protocol trains on them, hence 'train'."""
    check_choice(NAME, "val_split", val_split, ("train", "val"))
    tree = Tree(NAME, root, LAYOUT)
    files: list[tuple[str, str, Path]] = []
    for suffix, split in (("_val.txt", val_split), ("_test.txt", "test")):
        found = [p for p in tree.glob(f"*{suffix}") if not p.name.startswith("Ambiguous")]
        if not found:
            raise tree.error(f"missing segment files '<Class>{suffix}'")
        files += [(p.name[: -len(suffix)], split, p) for p in found]
    actions = sorted({cls for cls, _, _ in files})  # alphabetical = the official detection class order

    segments: dict[tuple[str, str], set[tuple[float, float, str]]] = defaultdict(set)
    for cls, split, path in files:
        for lineno, (video, start, end) in records(path, (3,), "'<video> <start_s> <end_s>'"):
            s, e = (parse(path, lineno, v, float, "segment time") for v in (start, end))
            if e < s:
                raise BuilderError(f"{path}:{lineno}: segment ends ({e}) before it starts ({s})")
            segments[(split, video)].add((s, e, cls))  # a set: the official files repeat some lines
    out = Collector(tree, allow_missing=allow_missing)
    for (split, video), segs in sorted(segments.items()):
        # Untrimmed videos hold several classes: labels live on the segments, not on the video.
        rows = [{"start": s, "end": e, "label": c} for s, e, c in sorted(segs)]
        out.add(video, split=split, media="video", segments=rows)
    return out.write(out_path, actions)
