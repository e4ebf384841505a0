"""UCF101 (action recognition): classInd.txt + trainlist0K.txt / testlist0K.txt, one folder per class."""

from __future__ import annotations

import os
import re

from ._common import BuilderError, BuiltManifest, Collector, Tree, check_choice, parse, records

NAME = "ucf101"
LAYOUT = (
    "<root>/ucfTrainTestlist/{classInd.txt, trainlist0K.txt, testlist0K.txt} and "
    "<root>/UCF-101/<Class>/v_<Class>_gGG_cCC.avi"
)
_GROUP = re.compile(r"_(g\d+)_c\d+$")  # v_ApplyEyeMakeup_g08_c01: group 08 = one performer set


def build(root: str, out_path: str, *, split: int = 1, allow_missing: bool = False) -> BuiltManifest:
    check_choice(NAME, "split", split, (1, 2, 3))
    tree = Tree(NAME, root, LAYOUT)
    class_file = tree.file("classInd.txt")
    index: dict[int, str] = {}
    for lineno, (idx, name) in records(class_file, (2,), "'<index> <ClassName>'"):
        index[parse(class_file, lineno, idx, int, "class index")] = name
    if sorted(index) != list(range(1, len(index) + 1)):
        raise BuilderError(f"{class_file}: class indices must be 1..{len(index)}, got {sorted(index)}")
    actions = [index[i] for i in range(1, len(index) + 1)]

    out = Collector(tree, allow_missing=allow_missing)
    lists = (("train", f"trainlist0{split}.txt", (2,)), ("test", f"testlist0{split}.txt", (1, 2)))
    for split_name, list_name, counts in lists:
        path = tree.file(list_name)
        for lineno, fields in records(path, counts, "'<Class>/<video>.avi [<class index>]'"):
            ref = fields[0]
            action = ref.replace("\\", "/").split("/")[0]  # testlists carry no index: the folder is the label
            if action not in actions:
                raise BuilderError(f"{path}:{lineno}: class folder {action!r} is not in {class_file}")
            if len(fields) == 2 and index.get(parse(path, lineno, fields[1], int, "class index")) != action:
                raise BuilderError(f"{path}:{lineno}: class index {fields[1]} does not match folder {action!r}")
            group = _GROUP.search(os.path.splitext(os.path.basename(ref))[0])
            out.add(ref, split=split_name, media="video", action=action, subject_id=group and group.group(1))
    return out.write(out_path, actions)
