"""VP-HMDB51 (STPrivacy's video privacy benchmark on HMDB51): a per-video label table of five privacy
attributes joined with HMDB51's official split."""

from __future__ import annotations

from ._common import BuiltManifest
from ._video_privacy import build_vp, hmdb51_split

NAME = "vp_hmdb51"
LABELS = ("vp_hmdb51.csv", "VP-HMDB51.csv")
LAYOUT = (
    "<root>/vp_hmdb51.csv (or VP-HMDB51.csv; header video,skin_color,face,gender,nudity,relationship[,split]), "
    "<root>/hmdb51_org/<action>/<video>.avi and <root>/testTrainMulti_7030_splits/<action>_test_split{1,2,3}.txt"
)


def build(root: str, out_path: str, *, split: int = 1, labels: str | None = None,
          allow_missing: bool = False) -> BuiltManifest:
    """``labels``: the label table (default: vp_hmdb51.csv or VP-HMDB51.csv under root); ``split``: the HMDB51
    split whose train / test videos become privacy_train / privacy_test (a 'split' column overrides it)."""
    return build_vp(NAME, LAYOUT, LABELS, hmdb51_split, root, out_path, split=split, labels=labels,
                    allow_missing=allow_missing)
