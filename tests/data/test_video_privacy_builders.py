"""Builders of the video privacy benchmarks (PA-HMDB51, VP-HMDB51, VP-UCF101) on tiny trees laid out like
the public downloads (empty media files; annotation files in their published formats)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from splavu_ray.data.builders import BuilderError, build
from splavu_ray.data.builders.__main__ import main
from splavu_ray.data.manifest import read_manifest

ATTRS = ("skin_color", "face", "gender", "nudity", "relationship")


def write(root: Path, rel: str, text: str) -> Path:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text, newline="")
    return root / rel


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def rows_by_stem(path: Path) -> dict[str, dict]:
    m = read_manifest(str(path))
    assert m.attributes == ATTRS
    out = {}
    for r in m.rows():
        assert os.path.isabs(r["uri"]) and os.path.isfile(r["uri"]) and r["media"] == "video"
        out[Path(r["uri"]).stem] = r
    return out


# --- PA-HMDB51 ------------------------------------------------------------------------------------
def anno(**ranges) -> dict:
    """One video of PrivacyAttributes/<action>.json: [start, end, code] ranges per attribute."""
    full = {a: [[0, 79, 0]] for a in ATTRS}
    full.update(ranges)
    return {**full, "review": True, "note": ""}


def pa_hmdb51_tree(root: Path) -> Path:
    # The real files: one JSON per action, keyed by the HMDB51 file name, inclusive frame ranges, list codes
    # for several people (gender [1, 2] = a man and a woman).
    write(root, "PrivacyAttributes/shake_hands.json", json.dumps({
        "Meet_shake_hands_u_cm_np2_le_med_1.avi": anno(face=[[0, 78, 1]], gender=[[0, 78, [1, 2]]],
                                                       skin_color=[[0, 78, 1]], relationship=[[0, 78, 1]]),
        # face visible in 10 of 80 frames: 'any' says present, 'majority' absent
        "Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0.avi": anno(face=[[0, 69, 0], [70, 79, 2]],
                                                                    nudity=[[0, 79, 1]]),
        "Left_out_shake_hands_u_cm_np2_le_med_0.avi": anno(),
    }, indent=4))
    write(root, "PrivacyAttributes/brush_hair.json", json.dumps({
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi": anno(skin_color=[[0, 40, 1], [41, 79, 0]],
                                                          gender=[[0, 79, 2]], nudity=[[0, 79, 2]]),
    }))
    split = "testTrainMulti_7030_splits/{}_test_split1.txt"
    write(root, split.format("shake_hands"), "Meet_shake_hands_u_cm_np2_le_med_1.avi 1 \r\n"
          "Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0.avi 2 \r\nLeft_out_shake_hands_u_cm_np2_le_med_0.avi 0 \r\n")
    write(root, split.format("brush_hair"), "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \r\n")
    touch(root, "hmdb51_org/shake_hands/Meet_shake_hands_u_cm_np2_le_med_1.avi",
          "hmdb51_org/shake_hands/Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0.avi",
          "hmdb51_org/shake_hands/Left_out_shake_hands_u_cm_np2_le_med_0.avi",
          "hmdb51_org/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi")
    return root


def test_pa_hmdb51(tmp_path):
    root = pa_hmdb51_tree(tmp_path / "pa")
    out = tmp_path / "pa.parquet"
    m = build("pa_hmdb51", str(root), str(out))
    assert m.actions == ("brush_hair", "shake_hands")
    rows = rows_by_stem(out)
    assert set(rows) == {"Meet_shake_hands_u_cm_np2_le_med_1", "Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0",
                         "April_09_brush_hair_u_nm_np1_ba_goo_0"}  # the split's 0 is left out
    meet = rows["Meet_shake_hands_u_cm_np2_le_med_1"]
    assert meet["split"] == "privacy_train" and meet["action"] == "shake_hands" and meet["dataset"] == "pa_hmdb51"
    assert meet["private_attributes"] == ["skin_color", "face", "gender", "relationship"]
    smosh = rows["Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0"]
    assert smosh["split"] == "privacy_test" and smosh["private_attributes"] == ["face", "nudity"]
    assert rows["April_09_brush_hair_u_nm_np1_ba_goo_0"]["private_attributes"] == ["skin_color", "gender", "nudity"]

    m = build("pa_hmdb51", str(root), str(out), aggregate="majority")
    smosh = {Path(r["uri"]).stem: r for r in m.rows()}["Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0"]
    assert smosh["private_attributes"] == ["nudity"]  # the face shows in 10 of 80 frames only

    # A split file of one's own replaces HMDB51's (and may keep the video HMDB51 split 1 leaves out).
    own = write(tmp_path, "own_split.txt", "Meet_shake_hands_u_cm_np2_le_med_1.avi test\n"
                "Left_out_shake_hands_u_cm_np2_le_med_0.avi train\nApril_09_brush_hair_u_nm_np1_ba_goo_0 train\n")
    m = build("pa_hmdb51", str(root), str(out), split_file=str(own))
    assert sorted(m.table["split"].to_pylist()) == ["privacy_test", "privacy_train", "privacy_train"]


def test_pa_hmdb51_names_what_is_wrong(tmp_path):
    root = pa_hmdb51_tree(tmp_path / "pa")
    out = str(tmp_path / "x.parquet")
    bad = json.loads((root / "PrivacyAttributes/brush_hair.json").read_text())
    video = next(iter(bad))
    del bad[video]["nudity"]
    write(root, "PrivacyAttributes/brush_hair.json", json.dumps(bad))
    with pytest.raises(BuilderError, match=r"brush_hair\.json: video 'April_09.*missing attribute field\(s\) \['nudity'\]"):
        build("pa_hmdb51", str(root), out)
    bad[video]["nudity"] = [[0, 79, "semi"]]
    write(root, "PrivacyAttributes/brush_hair.json", json.dumps(bad))
    with pytest.raises(BuilderError, match=r"field 'nudity'.*expected a code >= 0"):
        build("pa_hmdb51", str(root), out)
    bad[video]["nudity"] = [[50, 10, 1]]
    write(root, "PrivacyAttributes/brush_hair.json", json.dumps(bad))
    with pytest.raises(BuilderError, match=r"field 'nudity'.*start <= end"):
        build("pa_hmdb51", str(root), out)
    (root / "PrivacyAttributes/brush_hair.json").unlink()
    (root / "PrivacyAttributes/shake_hands.json").unlink()
    with pytest.raises(BuilderError, match=r"missing annotation files 'PrivacyAttributes/<action>\.json'"):
        build("pa_hmdb51", str(root), out)
    root = pa_hmdb51_tree(tmp_path / "pa2")
    for f in (root / "testTrainMulti_7030_splits").iterdir():
        f.unlink()
    with pytest.raises(BuilderError, match=r"missing HMDB51 split files.*--split-file"):
        build("pa_hmdb51", str(root), out)
    with pytest.raises(BuilderError, match="option aggregate='mean' must be one of"):
        build("pa_hmdb51", str(root), out, aggregate="mean")


# --- VP-HMDB51 / VP-UCF101 ------------------------------------------------------------------------
HEADER = "video,skin_color,face,gender,nudity,relationship"


def test_vp_hmdb51_cli(tmp_path, capsys):
    root = pa_hmdb51_tree(tmp_path / "hmdb")  # the HMDB51 videos and split files, plus the label table
    write(root, "VP-HMDB51.csv", f"{HEADER}\r\nMeet_shake_hands_u_cm_np2_le_med_1.avi,1,2,3,0,1\r\n"
          "Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0.avi,0,0,1,0,0\r\n"
          "Left_out_shake_hands_u_cm_np2_le_med_0.avi,1,1,1,1,1\r\n")
    out = tmp_path / "vp.parquet"
    assert main(["vp_hmdb51", str(root), str(out), "--split", "1"]) == 0
    assert "vp_hmdb51: 2 rows (privacy_test=1, privacy_train=1)" in capsys.readouterr().out
    rows = rows_by_stem(out)
    assert rows["Meet_shake_hands_u_cm_np2_le_med_1"]["private_attributes"] == ["skin_color", "face", "gender",
                                                                               "relationship"]
    assert rows["Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0"]["private_attributes"] == ["gender"]
    assert rows["Smosh_-_Handshake_shake_hands_u_cm_np2_le_med_0"]["action"] == "shake_hands"

    write(root, "VP-HMDB51.csv", "video,skin_color,face,gender,nudity\nMeet_shake_hands_u_cm_np2_le_med_1.avi,1,2,3,0\n")
    assert main(["vp_hmdb51", str(root), str(out)]) == 2
    assert "VP-HMDB51.csv: missing CSV column(s) ['relationship']" in capsys.readouterr().err
    write(root, "VP-HMDB51.csv", f"{HEADER}\nMeet_shake_hands_u_cm_np2_le_med_1.avi,1,2,3,0,1\n"
          "shake_hands/Meet_shake_hands_u_cm_np2_le_med_1,0,0,0,0,0\n")
    assert main(["vp_hmdb51", str(root), str(out)]) == 2
    assert "VP-HMDB51.csv:3: video 'shake_hands/Meet_shake_hands_u_cm_np2_le_med_1' is already labelled on line 2" \
        in capsys.readouterr().err


def test_vp_ucf101(tmp_path):
    root = tmp_path / "UCF101"
    write(root, "ucfTrainTestlist/trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n")
    write(root, "ucfTrainTestlist/testlist01.txt", "Archery/v_Archery_g01_c03.avi\r\n")
    touch(root, "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "UCF-101/Archery/v_Archery_g01_c03.avi",
          "UCF-101/Archery/v_Archery_g02_c01.avi")
    labels = write(tmp_path, "my_labels.csv", f"{HEADER},split\nv_ApplyEyeMakeup_g08_c01,1,2,2,0,0,\n"
                   "Archery/v_Archery_g01_c03.avi,0,1,0,0,0,\nArchery/v_Archery_g02_c01.avi,1,1,1,1,1,train\n")
    out = tmp_path / "vp.parquet"
    m = build("vp_ucf101", str(root), str(out), labels=str(labels))
    assert m.actions == ("ApplyEyeMakeup", "Archery")
    rows = rows_by_stem(out)
    assert rows["v_ApplyEyeMakeup_g08_c01"]["split"] == "privacy_train"
    assert rows["v_Archery_g01_c03"]["split"] == "privacy_test" and rows["v_Archery_g01_c03"]["private_attributes"] == ["face"]
    assert rows["v_Archery_g02_c01"]["split"] == "privacy_train"  # not in split 1's lists: the 'split' column
    write(tmp_path, "my_labels.csv", f"{HEADER}\nv_ApplyEyeMakeup_g08_c01,1,x,2,0,0\n")
    with pytest.raises(BuilderError, match=r"my_labels\.csv:2: column 'face' must be an integer code"):
        build("vp_ucf101", str(root), str(out), labels=str(labels))
    with pytest.raises(BuilderError, match=r"missing annotation file 'vp_ucf101\.csv' \(or 'VP-UCF101\.csv'\)"):
        build("vp_ucf101", str(root), str(out))
    # Only train videos: the attacker could not be scored.
    write(tmp_path, "my_labels.csv", f"{HEADER}\nv_ApplyEyeMakeup_g08_c01,1,1,2,0,0\n")
    with pytest.raises(BuilderError, match="no annotated video falls in split 'privacy_test'"):
        build("vp_ucf101", str(root), str(out), labels=str(labels))
