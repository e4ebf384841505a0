"""HMDB51 (action recognition): per-class split files '<action>_test_split<k>.txt' ('<video>.avi <0|1|2>')."""

from __future__ import annotations

from ._common import BuilderError, BuiltManifest, Collector, Tree, check_choice, records

NAME = "hmdb51"
LAYOUT = (
    "<root>/testTrainMulti_7030_splits/<action>_test_split{1,2,3}.txt ('<video>.avi <0|1|2>') and "
    "<root>/hmdb51_org/<action>/<video>.avi"
)
_SPLIT_OF = {"1": "train", "2": "test"}  # 0 = not used by this split


def build(root: str, out_path: str, *, split: int = 1, allow_missing: bool = False) -> BuiltManifest:
    check_choice(NAME, "split", split, (1, 2, 3))
    tree = Tree(NAME, root, LAYOUT)
    suffix = f"_test_split{split}.txt"
    files = tree.glob(f"*{suffix}")
    if not files:
        raise tree.error(f"missing split files '<action>{suffix}'")
    # HMDB51 ships no class index: the alphabetical order of the action names is the convention.
    by_action = {f.name[: -len(suffix)]: f for f in files}
    actions = sorted(by_action)
    out = Collector(tree, allow_missing=allow_missing)
    for action in actions:
        path = by_action[action]
        for lineno, (video, flag) in records(path, (2,), "'<video>.avi <0|1|2>'"):
            if flag not in ("0", "1", "2"):
                raise BuilderError(f"{path}:{lineno}: split id must be 0, 1 or 2, got {flag!r}")
            if flag in _SPLIT_OF:
                out.add(f"{action}/{video}", split=_SPLIT_OF[flag], media="video", action=action)
    return out.write(out_path, actions)
