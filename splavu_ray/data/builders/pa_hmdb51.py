"""PA-HMDB51 (video privacy attributes): PrivacyAttributes/<action>.json with per-frame-range labels of five
attributes on 592 HMDB51 videos; split from HMDB51's official split files or a user split file."""

from __future__ import annotations

import json

from ._common import BuilderError, BuiltManifest, Collector, Tree, log
from ._video_privacy import (
    ATTRIBUTES,
    check_aggregate,
    check_both_splits,
    hmdb51_split,
    read_split_file,
    report_left_out,
    stem,
    video_level,
)

NAME = "pa_hmdb51"
LAYOUT = (
    "<root>/PrivacyAttributes/<action>.json ({'<video>.avi': {'skin_color': [[start, end, code], ...], 'face': ..., "
    "'gender': ..., 'nudity': ..., 'relationship': ...}}), <root>/hmdb51_org/<action>/<video>.avi and, for the "
    "split, <root>/testTrainMulti_7030_splits/<action>_test_split{1,2,3}.txt (or split_file)"
)


def build(root: str, out_path: str, *, split: int = 1, split_file: str | None = None, aggregate: str = "any",
          allow_missing: bool = False) -> BuiltManifest:
    """``split``: HMDB51 official split whose train (1) / test (2) videos become privacy_train / privacy_test
    (videos it marks 0 are left out); ``split_file``: '<video> <train|test>' lines instead. ``aggregate``:
    how frame ranges become a video-level label ('any' non-zero range, or a 'majority' of the frames)."""
    check_aggregate(NAME, aggregate)
    tree = Tree(NAME, root, LAYOUT)
    files = [p for p in tree.glob("*.json") if p.parent.name == "PrivacyAttributes"]
    if not files:
        raise tree.error("missing annotation files 'PrivacyAttributes/<action>.json'")
    if split_file:
        split_of = read_split_file(split_file)
    else:
        split_of = {key: part for key, (part, _) in hmdb51_split(tree, split).items() if part}
    actions = sorted(p.stem for p in files)
    out = Collector(tree, allow_missing=allow_missing)
    left_out: list[str] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            videos = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BuilderError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(videos, dict):
            raise BuilderError(f"{path}: expected an object {{'<video>.avi': {{attribute: ranges}}}}")
        for video, anno in videos.items():
            where = f"{path}: video {video!r}"
            if not isinstance(anno, dict):
                raise BuilderError(f"{where}: expected an object of attribute ranges, got {type(anno).__name__}")
            missing = [a for a in ATTRIBUTES if a not in anno]
            if missing:
                raise BuilderError(f"{where}: missing attribute field(s) {missing}; expected {list(ATTRIBUTES)}")
            present = [a for a in ATTRIBUTES if video_level(anno[a], aggregate, f"{where}, field {a!r}")]
            key = stem(video)
            if key in seen:
                raise BuilderError(f"{where}: the video is labelled twice (also in {seen[key]})")
            seen[key] = path.name
            part = split_of.get(key)
            if part is None:
                left_out.append(video)
                continue
            out.add(f"{path.stem}/{video}", split=part, media="video", action=path.stem, private_attributes=present)
    why = "not in split_file" if split_file else f"marked 0 or absent in HMDB51 split {split}"
    report_left_out(log, NAME, left_out, why)
    if out.rows and (allow_missing or not out.missing):  # else write() names the missing media
        check_both_splits(tree, (r["split"] for r in out.rows))
    return out.write(out_path, actions, ATTRIBUTES)
