"""VISPR (private attributes): still images + one JSON per image ({"id", "image_path", "labels"})."""

from __future__ import annotations

import json

from ..manifest import VISPR_ATTRIBUTES
from ._common import IMAGE_EXTS, BuilderError, BuiltManifest, Collector, Tree

NAME = "vispr"
LAYOUT = (
    "<root>/annos/{train2017,val2017,test2017}/<id>.json ({'id', 'image_path', 'labels'}) and "
    "<root>/images/{train2017,val2017,test2017}/<id>.jpg"
)
_SPLITS = {"train2017": "train", "val2017": "val", "test2017": "test"}


def build(root: str, out_path: str, *, allow_missing: bool = False) -> BuiltManifest:
    tree = Tree(NAME, root, LAYOUT)
    annos = [p for p in tree.glob("*.json") if p.parent.name in _SPLITS]
    for folder in ("train2017", "test2017"):  # the privacy protocol needs both
        if not any(p.parent.name == folder for p in annos):
            raise tree.error(f"missing annotation files 'annos/{folder}/*.json'")
    out = Collector(tree, allow_missing=allow_missing, exts=IMAGE_EXTS)
    for path in annos:
        try:
            anno = json.loads(path.read_text(encoding="utf-8"))
            image, labels = anno["image_path"], anno["labels"]
            if not isinstance(image, str) or not isinstance(labels, list):
                raise TypeError("'image_path' must be a string and 'labels' a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise BuilderError(f"{path}: expected JSON with 'image_path' and 'labels' ({exc!r})") from None
        # Keep only the paper's 7 attributes; the other ~60 VISPR labels are not part of the protocol.
        present = [a for a in VISPR_ATTRIBUTES if a in labels]
        out.add(image, split=_SPLITS[path.parent.name], media="image", private_attributes=present)
    return out.write(out_path, attributes=VISPR_ATTRIBUTES)
