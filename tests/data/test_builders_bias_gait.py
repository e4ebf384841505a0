"""Builders of the natural-bias (Toyota Smarthome) and gait (CASIA-B) datasets on tiny fake trees laid out
like the public downloads (empty media files; tests/evaluation/test_gait_toyota_cli.py uses real videos)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_builders import built, by_name, touch, write

from splavu_ray.data.builders import BuilderError, build, options
from splavu_ray.data.builders.__main__ import main
from splavu_ray.data.builders.casia_b import parse_sequence
from splavu_ray.data.builders.toyota_smarthome import ACTIONS, CS_TRAIN_SUBJECTS
from splavu_ray.data.manifest import read_manifest


# --- Toyota Smarthome (trimmed) ---------------------------------------------------------------------
def toyota_tree(root: Path) -> Path:
    touch(root, "mp4/Cook.Cleandishes_p02_r00_v02_c03.mp4", "mp4/Walk_p03_r01_v15_c07.mp4",
          "mp4/WatchTV_p25_r04_v01_c05.mp4", "mp4/Sitdown_p20_r07_v09_c01.mp4",
          "mp4/Sitdown_p20_r07_v09_c01.avi",  # the same clip in a second container counts once
          "skeleton/Walk_p03_r01_v15_c07_pose3d.json")  # the skeleton release shares the names: not a video
    write(root, "subject_gender.csv", "subject,gender\np02,F\n3,male\nP25,female\n20,M\n")
    return root


def test_toyota_smarthome(tmp_path):
    m, _ = built(tmp_path, "toyota_smarthome", toyota_tree(tmp_path / "toyota"))
    assert len(m.actions) == 31 and m.actions[0] == "Cook.Cleandishes" and m.actions[30] == "WatchTV"
    assert {k: (r["split"], r["action"], r["action_id"], r["subject_id"], r["gender"]) for k, r in by_name(m).items()} == {
        "Cook.Cleandishes_p02_r00_v02_c03": ("test", "Cook.Cleandishes", 0, "p02", "female"),
        "Walk_p03_r01_v15_c07": ("train", "Walk", 29, "p03", "male"),
        "WatchTV_p25_r04_v01_c05": ("train", "WatchTV", 30, "p25", "female"),
        "Sitdown_p20_r07_v09_c01": ("test", "Sitdown", 24, "p20", "male"),
    }
    # the published cross-subject split: 11 training subjects, the other 7 of the 18 test
    assert sorted(CS_TRAIN_SUBJECTS) == [3, 4, 6, 7, 9, 12, 13, 15, 17, 19, 25] and len(set(ACTIONS)) == 31
    (tmp_path / "toyota/subject_gender.csv").rename(tmp_path / "genders.csv")
    m0, _ = built(tmp_path, "toyota_smarthome", tmp_path / "toyota")  # no table: genders stay empty
    assert set(m0.table["gender"].to_pylist()) == {None}
    m1, _ = built(tmp_path, "toyota_smarthome", tmp_path / "toyota", genders=str(tmp_path / "genders.csv"))
    assert by_name(m1)["Walk_p03_r01_v15_c07"]["gender"] == "male"


def test_toyota_smarthome_layout_errors(tmp_path):
    root = toyota_tree(tmp_path / "toyota")
    with pytest.raises(BuilderError, match="nope.csv' does not exist"):
        build("toyota_smarthome", str(root), str(tmp_path / "o.parquet"), genders=str(tmp_path / "nope.csv"))
    write(root, "subject_gender.csv", "subject,sex\np02,F\n")
    with pytest.raises(BuilderError, match=r"missing CSV column\(s\) \['gender'\]"):
        build("toyota_smarthome", str(root), str(tmp_path / "o.parquet"))
    write(root, "subject_gender.csv", "subject,gender\n")
    touch(root, "mp4/Juggle_p02_r00_v01_c01.mp4")
    with pytest.raises(BuilderError, match="activity 'Juggle' is not one of the 31 cross-subject activities"):
        build("toyota_smarthome", str(root), str(tmp_path / "o.parquet"))
    (empty := tmp_path / "empty").mkdir()
    with pytest.raises(BuilderError, match="Cook.Cleandishes_p02_r00_v02_c03.mp4"):
        build("toyota_smarthome", str(empty), str(tmp_path / "o.parquet"))
    with pytest.raises(BuilderError, match=r"unknown option\(s\) \['protocol'\]"):
        build("toyota_smarthome", str(root), str(tmp_path / "o.parquet"), protocol="cv1")


# --- CASIA-B ----------------------------------------------------------------------------------------
def casia_tree(root: Path) -> Path:
    # the RGB video release (DatasetB-1/2): flat 'video' folders of '<subject>-<cond>-<NN>-<view>.avi'
    touch(root, "DatasetB-1/video/001-nm-01-000.avi", "DatasetB-1/video/074-cl-02-180.avi",
          "DatasetB-2/video/075-nm-05-090.avi", "DatasetB-2/video/124-bg-01-018.avi",
          "DatasetB-2/video/124-bg-01-018.mp4",  # a mirror in another container counts once
          "DatasetB-2/video/124-xx-01-018.avi", "DatasetB-2/video/124-nm-01-019.avi",  # not CASIA-B names
          "DatasetB-2/readme.txt")
    return root


def test_casia_b(tmp_path):
    m, _ = built(tmp_path, "casia_b", casia_tree(tmp_path / "casia"))
    assert m.actions == ()
    assert {k: (r["split"], r["subject_id"], r["media"], r["action_id"]) for k, r in by_name(m).items()} == {
        "001-nm-01-000": ("train", "001", "video", -1), "074-cl-02-180": ("train", "074", "video", -1),
        "075-nm-05-090": ("test", "075", "video", -1), "124-bg-01-018": ("test", "124", "video", -1),
    }
    unseen, _ = built(tmp_path, "casia_b", tmp_path / "casia", unseen_only=True)
    assert set(unseen.table["split"].to_pylist()) == {"test"} and len(unseen) == 2
    walk = parse_sequence("/data/DatasetB-2/video/075-nm-05-090.avi")
    assert (walk.subject, walk.condition, walk.sequence, walk.view) == ("075", "nm", "nm-05", "090")
    assert parse_sequence("075-nm-05-091.avi") is None and parse_sequence("v_x.avi") is None


def test_casia_b_frame_folders_are_refused_with_the_way_out(tmp_path):
    root = tmp_path / "GaitDatasetB-silh"
    touch(root, "001/nm-01/000/001-nm-01-000-001.png", "001/nm-01/000/001-nm-01-000-002.png",
          "001/bg-02/090/001-bg-02-090-001.png")
    with pytest.raises(BuilderError, match=r"found 2 CASIA-B frame folder\(s\) such as .*001/bg-02/090.* "
                                           r"frame-folder release is not supported.*ffmpeg"):
        build("casia_b", str(root), str(tmp_path / "o.parquet"))
    (empty := tmp_path / "empty").mkdir()
    with pytest.raises(BuilderError, match="no CASIA-B video named like '001-nm-01-090.avi'"):
        build("casia_b", str(empty), str(tmp_path / "o.parquet"))
    only_train = tmp_path / "train_only"
    touch(only_train, "video/001-nm-01-000.avi")
    with pytest.raises(BuilderError, match="among the unseen subjects 075-124"):
        build("casia_b", str(only_train), str(tmp_path / "o.parquet"), unseen_only=True)


def test_cli(tmp_path, capsys):
    assert options("casia_b") == {"unseen_only": False} and options("toyota_smarthome") == {"genders": None}
    out = tmp_path / "casia.parquet"
    assert main(["casia_b", str(casia_tree(tmp_path / "casia")), str(out), "--unseen-only"]) == 0
    assert capsys.readouterr().out.strip() == f"casia_b: 2 rows (test=2), 0 actions -> {out}"
    out = tmp_path / "toyota.parquet"
    genders = tmp_path / "g.csv"
    genders.write_text("subject,gender\n2,f\n3,m\n20,m\n25,f\n")
    assert main(["toyota_smarthome", str(toyota_tree(tmp_path / "toyota")), str(out), "--genders", str(genders)]) == 0
    assert capsys.readouterr().out.strip() == f"toyota_smarthome: 4 rows (test=2, train=2), 31 actions -> {out}"
    assert read_manifest(str(out)).split("train").rows()[0]["gender"] in ("male", "female")
    assert main(["toyota_smarthome", str(tmp_path / "toyota"), str(out), "--unseen-only"]) == 2
    assert "unknown option(s) ['unseen_only']" in capsys.readouterr().err
