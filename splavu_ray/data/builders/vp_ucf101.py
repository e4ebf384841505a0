"""VP-UCF101 (STPrivacy's video privacy benchmark on UCF101): a per-video label table of five privacy
attributes joined with UCF101's official split."""

from __future__ import annotations

from ._common import BuiltManifest
from ._video_privacy import build_vp, ucf101_split

NAME = "vp_ucf101"
LABELS = ("vp_ucf101.csv", "VP-UCF101.csv")
LAYOUT = (
    "<root>/vp_ucf101.csv (or VP-UCF101.csv; header video,skin_color,face,gender,nudity,relationship[,split]), "
    "<root>/UCF-101/<Class>/v_<Class>_gGG_cCC.avi and <root>/ucfTrainTestlist/{trainlist0K.txt, testlist0K.txt}"
)


def build(root: str, out_path: str, *, split: int = 1, labels: str | None = None,
          allow_missing: bool = False) -> BuiltManifest:
    """``labels``: the label table (default: vp_ucf101.csv or VP-UCF101.csv under root); ``split``: the UCF101
    split whose train / test lists become privacy_train / privacy_test (a 'split' column overrides it)."""
    return build_vp(NAME, LAYOUT, LABELS, ucf101_split, root, out_path, split=split, labels=labels,
                    allow_missing=allow_missing)
