"""Kinetics-400 (action recognition): train.csv / validate.csv / test.csv, '<id>_<start:06d>_<end:06d>.mp4'."""

from __future__ import annotations

from ._common import BuilderError, BuiltManifest, Collector, Tree, read_csv

NAME = "kinetics400"
LAYOUT = (
    "<root>/annotations/{train,validate,test}.csv (label,youtube_id,time_start,time_end,split) and "
    "<root>/{train,val,test}/[<label>/]<youtube_id>_<time_start:06d>_<time_end:06d>.mp4"
)
# (split, accepted CSV names, required): test labels were withheld in the original release.
_CSVS = (("train", ("train.csv",), True), ("val", ("validate.csv", "val.csv"), True), ("test", ("test.csv",), False))


def build(root: str, out_path: str, *, allow_missing: bool = True) -> BuiltManifest:
    """Videos taken down from YouTube are routinely absent: they are skipped and counted by default."""
    tree = Tree(NAME, root, LAYOUT)
    tables = []
    for split, names, required in _CSVS:
        path = tree.file(*names) if required else tree.optional(*names)
        if path is not None:
            rows = read_csv(path, ("youtube_id", "time_start", "time_end") + (("label",) if required else ()))
            tables.append((split, path, rows))
    # The Kinetics class index is the alphabetical order of the label names.
    actions = sorted({r["label"] for _, _, rows in tables for r in rows if r.get("label")})
    out = Collector(tree, allow_missing=allow_missing)
    for split, path, rows in tables:
        for lineno, r in enumerate(rows, 2):  # line 1 is the header
            try:
                start, end = int(float(r["time_start"])), int(float(r["time_end"]))
            except ValueError:
                raise BuilderError(f"{path}:{lineno}: time_start/time_end must be numbers, got {r}") from None
            stem = f"{r['youtube_id']}_{start:06d}_{end:06d}"
            out.add(stem, split=split, media="video", action=r.get("label") or None)
    return out.write(out_path, actions)
