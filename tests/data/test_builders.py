"""Dataset builders on tiny fake trees laid out exactly like the public downloads (empty media files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from splavu_ray.data.builders import BUILDERS, BuilderError, build
from splavu_ray.data.builders.__main__ import main
from splavu_ray.data.manifest import VISPR_ATTRIBUTES, read_manifest


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def write(root: Path, rel: str, text: str) -> Path:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text, newline="")
    return root / rel


def by_name(manifest) -> dict[str, dict]:
    rows = manifest.rows()
    for r in rows:  # every builder promises absolute uris to files that exist
        assert os.path.isabs(r["uri"]) and os.path.isfile(r["uri"]), r["uri"]
    return {Path(r["uri"]).stem: r for r in rows}


def built(tmp_path: Path, name: str, root: Path, **kw):
    out = tmp_path / f"{name}.parquet"
    written = build(name, str(root), str(out), **kw)
    back = read_manifest(str(out))
    assert back.actions == written.actions and len(back) == len(written)
    return back, written


# --- UCF101 ---------------------------------------------------------------------------------------
def ucf101_tree(root: Path) -> Path:
    # The official files have CRLF endings; the class folder and the file disagree in case for one class.
    write(root, "ucfTrainTestlist/classInd.txt", "1 ApplyEyeMakeup\r\n2 Archery\r\n3 HandstandPushups\r\n")
    write(root, "ucfTrainTestlist/trainlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nHandstandPushups/v_HandStandPushups_g09_c02.avi 3\r\n")
    write(root, "ucfTrainTestlist/testlist01.txt", "Archery/v_Archery_g01_c03.avi\r\n")
    write(root, "ucfTrainTestlist/trainlist02.txt", "Archery/v_Archery_g01_c03.avi 2\r\n")
    write(root, "ucfTrainTestlist/testlist02.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\r\nHandstandPushups/v_HandstandPushups_g09_c02.avi\r\n")
    touch(root, "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "UCF-101/Archery/v_Archery_g01_c03.avi",
          "UCF-101/HandstandPushups/v_HandStandPushups_g09_c02.avi")
    return root


def test_ucf101(tmp_path):
    m, _ = built(tmp_path, "ucf101", ucf101_tree(tmp_path / "UCF101"))
    assert m.actions == ("ApplyEyeMakeup", "Archery", "HandstandPushups")
    rows = by_name(m)
    assert {k: (r["split"], r["action"], r["action_id"], r["subject_id"]) for k, r in rows.items()} == {
        "v_ApplyEyeMakeup_g08_c01": ("train", "ApplyEyeMakeup", 0, "g08"),
        "v_HandStandPushups_g09_c02": ("train", "HandstandPushups", 2, "g09"),
        "v_Archery_g01_c03": ("test", "Archery", 1, "g01"),
    }
    assert all(r["dataset"] == "ucf101" and r["media"] == "video" for r in rows.values())
    m2, _ = built(tmp_path, "ucf101", tmp_path / "UCF101", split=2)
    # split 2 names 'v_HandstandPushups' while the disk has 'v_HandStandPushups': matched case-insensitively
    assert {k: r["split"] for k, r in by_name(m2).items()} == {
        "v_Archery_g01_c03": "train", "v_ApplyEyeMakeup_g08_c01": "test", "v_HandStandPushups_g09_c02": "test"}


def test_ucf101_layout_errors(tmp_path):
    root = ucf101_tree(tmp_path / "UCF101")
    (root / "ucfTrainTestlist/testlist01.txt").unlink()
    with pytest.raises(BuilderError, match="testlist01.txt"):
        build("ucf101", str(root), str(tmp_path / "o.parquet"))
    write(root, "ucfTrainTestlist/testlist01.txt", "Archery/v_Archery_g01_c03.avi\n")
    write(root, "ucfTrainTestlist/trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\n")
    with pytest.raises(BuilderError, match=r"trainlist01.txt:1: class index 2 does not match"):
        build("ucf101", str(root), str(tmp_path / "o.parquet"))
    write(root, "ucfTrainTestlist/trainlist01.txt", "Archery/v_Archery_g02_c01.avi 2\n")
    with pytest.raises(BuilderError, match="v_Archery_g02_c01.avi"):  # a listed video is absent
        build("ucf101", str(root), str(tmp_path / "o.parquet"))
    with pytest.raises(BuilderError, match="split=4"):
        build("ucf101", str(root), str(tmp_path / "o.parquet"), split=4)
    with pytest.raises(BuilderError, match="does not exist"):
        build("ucf101", str(tmp_path / "nowhere"), str(tmp_path / "o.parquet"))


# --- HMDB51 ---------------------------------------------------------------------------------------
def hmdb51_tree(root: Path) -> Path:
    s = "testTrainMulti_7030_splits"
    write(root, f"{s}/brush_hair_test_split1.txt", "brush_hair_a.avi 1 \nbrush_hair_b.avi 2 \nbrush_hair_c.avi 0 \n")
    write(root, f"{s}/cartwheel_test_split1.txt", "cartwheel_a.avi 2 \n")
    write(root, f"{s}/brush_hair_test_split2.txt", "brush_hair_a.avi 2 \n")
    write(root, f"{s}/cartwheel_test_split2.txt", "cartwheel_a.avi 1 \n")
    touch(root, "hmdb51_org/brush_hair/brush_hair_a.avi", "hmdb51_org/brush_hair/brush_hair_b.avi",
          "hmdb51_org/brush_hair/brush_hair_c.avi", "hmdb51_org/cartwheel/cartwheel_a.avi")
    (root / "hmdb51_org/loop").symlink_to(root, target_is_directory=True)  # a link cycle must not hang the walk
    return root


def test_hmdb51(tmp_path):
    m, _ = built(tmp_path, "hmdb51", hmdb51_tree(tmp_path / "hmdb"))
    assert m.actions == ("brush_hair", "cartwheel")
    rows = by_name(m)  # id 0 = not used by this split
    assert {k: (r["split"], r["action_id"]) for k, r in rows.items()} == {
        "brush_hair_a": ("train", 0), "brush_hair_b": ("test", 0), "cartwheel_a": ("test", 1)}
    m2, _ = built(tmp_path, "hmdb51", tmp_path / "hmdb", split=2)
    assert {k: r["split"] for k, r in by_name(m2).items()} == {"brush_hair_a": "test", "cartwheel_a": "train"}


def test_hmdb51_layout_errors(tmp_path):
    root = hmdb51_tree(tmp_path / "hmdb")
    with pytest.raises(BuilderError, match="_test_split3.txt"):
        build("hmdb51", str(root), str(tmp_path / "o.parquet"), split=3)
    write(root, "testTrainMulti_7030_splits/cartwheel_test_split1.txt", "cartwheel_a.avi 3\n")
    with pytest.raises(BuilderError, match=r"cartwheel_test_split1.txt:1: split id must be 0, 1 or 2"):
        build("hmdb51", str(root), str(tmp_path / "o.parquet"))
    write(root, "testTrainMulti_7030_splits/cartwheel_test_split1.txt", "cartwheel_a.avi\n")
    with pytest.raises(BuilderError, match=r"cartwheel_test_split1.txt:1: expected"):
        build("hmdb51", str(root), str(tmp_path / "o.parquet"))


# --- Kinetics-400 ---------------------------------------------------------------------------------
def kinetics_tree(root: Path) -> Path:
    head = "label,youtube_id,time_start,time_end,split,is_cc\n"
    write(root, "annotations/train.csv", head + "abseiling,--07WQ2iBlw,1,11,train,0\n"
          '"passing American football (in game)",aB3_x,14,24,train,0\nabseiling,gone000,0,10,train,0\n')
    write(root, "annotations/validate.csv", head + "air drumming,-eGnPDG5Pxs,30,40,val,0\n")
    write(root, "annotations/test.csv", "youtube_id,time_start,time_end,split\nzz9,5,15,test\n")
    touch(root, "train/--07WQ2iBlw_000001_000011.mp4", "train/aB3_x_000014_000024.mp4",  # per-split folder
          "val/air drumming/-eGnPDG5Pxs_000030_000040.mp4", "test/zz9_000005_000015.mp4")  # per-label folder
    return root


def test_kinetics400(tmp_path):
    m, written = built(tmp_path, "kinetics400", kinetics_tree(tmp_path / "k400"))
    assert m.actions == ("abseiling", "air drumming", "passing American football (in game)")
    assert written.missing == ("gone000_000000_000010",)  # a taken-down video: counted, not fatal
    assert {k: (r["split"], r["action"], r["action_id"]) for k, r in by_name(m).items()} == {
        "--07WQ2iBlw_000001_000011": ("train", "abseiling", 0),
        "aB3_x_000014_000024": ("train", "passing American football (in game)", 2),
        "-eGnPDG5Pxs_000030_000040": ("val", "air drumming", 1),
        "zz9_000005_000015": ("test", None, -1),  # the original test.csv has no labels
    }
    with pytest.raises(BuilderError, match="gone000_000000_000010"):
        build("kinetics400", str(tmp_path / "k400"), str(tmp_path / "o.parquet"), allow_missing=False)


def test_kinetics400_layout_errors(tmp_path):
    root = kinetics_tree(tmp_path / "k400")
    write(root, "annotations/validate.csv", "label,youtube_id,time_start\nabseiling,x,1\n")
    with pytest.raises(BuilderError, match=r"validate.csv: missing CSV column\(s\) \['time_end'\]"):
        build("kinetics400", str(root), str(tmp_path / "o.parquet"))
    (root / "annotations/validate.csv").unlink()
    with pytest.raises(BuilderError, match="validate.csv"):
        build("kinetics400", str(root), str(tmp_path / "o.parquet"))
    empty = tmp_path / "empty"
    write(empty, "train.csv", "label,youtube_id,time_start,time_end,split\nabseiling,x,1,11,train\n")
    write(empty, "validate.csv", "label,youtube_id,time_start,time_end,split\n")
    with pytest.raises(BuilderError, match="1 of 1 media"):  # nothing found at all: the root is wrong
        build("kinetics400", str(empty), str(tmp_path / "o.parquet"))


# --- VISPR ----------------------------------------------------------------------------------------
def vispr_tree(root: Path) -> Path:
    for split, iid, labels in (("train", "2017_1", ["a17_color", "a4_gender", "a0_safe", "a16_race"]),
                               ("val", "2017_2", []), ("test", "2017_3", ["a65_rel_social", "a9_face_complete"])):
        write(root, f"annos/{split}2017/{iid}.json",
              json.dumps({"id": iid, "image_path": f"images/{split}2017/{iid}.jpg", "labels": labels}))
        touch(root, f"images/{split}2017/{iid}.jpg")
    return root


def test_vispr(tmp_path):
    m, _ = built(tmp_path, "vispr", vispr_tree(tmp_path / "vispr"))
    assert m.attributes == VISPR_ATTRIBUTES and m.actions == ()
    rows = by_name(m)
    assert {k: (r["split"], r["media"], r["private_attributes"]) for k, r in rows.items()} == {
        "2017_1": ("train", "image", ["a17_color", "a4_gender"]),  # non-protocol labels dropped
        "2017_2": ("val", "image", []),
        "2017_3": ("test", "image", ["a9_face_complete", "a65_rel_social"]),
    }
    assert m.split("test").attribute_matrix().tolist() == [[0, 0, 1, 0, 0, 0, 1]]


def test_vispr_layout_errors(tmp_path):
    root = vispr_tree(tmp_path / "vispr")
    write(root, "annos/val2017/2017_2.json", json.dumps({"id": "2017_2", "labels": []}))
    with pytest.raises(BuilderError, match=r"2017_2.json: expected JSON with 'image_path'"):
        build("vispr", str(root), str(tmp_path / "o.parquet"))
    (root / "annos/test2017/2017_3.json").unlink()
    with pytest.raises(BuilderError, match=r"annos/test2017/\*.json"):
        build("vispr", str(root), str(tmp_path / "o.parquet"))


# --- THUMOS14 -------------------------------------------------------------------------------------
def thumos_tree(root: Path) -> Path:
    write(root, "annotation/BaseballPitch_val.txt",
          "video_validation_0000051 67.5 75.9\nvideo_validation_0000051  10.0 12.5\n")
    write(root, "annotation/CliffDiving_val.txt", "video_validation_0000051 30.1 31.0\n"
          "video_validation_0000052 1.0 2.0\nvideo_validation_0000052 1.0 2.0\n")  # repeated line
    write(root, "annotation/Ambiguous_val.txt", "video_validation_0000099 1.0 2.0\n")
    write(root, "annotation_test/BaseballPitch_test.txt", "video_test_0000004 0.2 1.1\n")
    write(root, "annotation_test/Ambiguous_test.txt", "video_test_0000004 5.0 6.0\n")
    touch(root, "validation/video_validation_0000051.mp4", "validation/video_validation_0000052.mp4",
          "validation/video_validation_0000099.mp4", "test/video_test_0000004.mp4")
    return root


def test_thumos14(tmp_path):
    m, _ = built(tmp_path, "thumos14", thumos_tree(tmp_path / "thumos"))
    assert m.actions == ("BaseballPitch", "CliffDiving")
    rows = by_name(m)
    assert set(rows) == {"video_validation_0000051", "video_validation_0000052", "video_test_0000004"}
    v51 = rows["video_validation_0000051"]
    assert v51["split"] == "train" and v51["action"] is None and v51["segments"] == [
        {"start": 10.0, "end": 12.5, "label": "BaseballPitch"},
        {"start": 30.1, "end": 31.0, "label": "CliffDiving"},
        {"start": 67.5, "end": 75.9, "label": "BaseballPitch"},
    ]
    assert rows["video_validation_0000052"]["segments"] == [{"start": 1.0, "end": 2.0, "label": "CliffDiving"}]
    assert rows["video_test_0000004"]["split"] == "test"  # its Ambiguous segment is ignored
    assert rows["video_test_0000004"]["segments"] == [{"start": 0.2, "end": 1.1, "label": "BaseballPitch"}]
    m2, _ = built(tmp_path, "thumos14", tmp_path / "thumos", val_split="val")
    assert sorted(set(m2.table["split"].to_pylist())) == ["test", "val"]


def test_thumos14_layout_errors(tmp_path):
    root = thumos_tree(tmp_path / "thumos")
    write(root, "annotation/CliffDiving_val.txt", "video_validation_0000052 3.0 abc\n")
    with pytest.raises(BuilderError, match=r"CliffDiving_val.txt:1: segment time must be a float, got 'abc'"):
        build("thumos14", str(root), str(tmp_path / "o.parquet"))
    write(root, "annotation/CliffDiving_val.txt", "video_validation_0000052 3.0 2.0\n")
    with pytest.raises(BuilderError, match="ends"):
        build("thumos14", str(root), str(tmp_path / "o.parquet"))
    for p in (root / "annotation_test").iterdir():
        p.unlink()
    with pytest.raises(BuilderError, match="<Class>_test.txt"):
        build("thumos14", str(root), str(tmp_path / "o.parquet"))


# --- UCF-Crime ------------------------------------------------------------------------------------
def ucf_crime_tree(root: Path) -> Path:
    write(root, "Anomaly_Detection_splits/Anomaly_Train.txt",
          "Arson/Arson001_x264.mp4\nTraining_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n")
    write(root, "Anomaly_Detection_splits/Temporal_Anomaly_Annotation.txt",
          "Arson011_x264.mp4  Arson  150  420  680  1267\nRoadAccidents002_x264.mp4  RoadAccidents  30  60  -1  -1\n"
          "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n")
    touch(root, "Anomaly-Videos-Part-1/Arson/Arson001_x264.mp4", "Anomaly-Videos-Part-1/Arson/Arson011_x264.mp4",
          "Anomaly-Videos-Part-3/RoadAccidents/RoadAccidents002_x264.mp4",
          "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4",
          "Normal_Videos_event/Normal_Videos001_x264.mp4",  # shipped twice: the listed folder must win
          "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4")
    return root


def test_ucf_crime(tmp_path):
    m, _ = built(tmp_path, "ucf_crime", ucf_crime_tree(tmp_path / "crime"))
    assert m.actions[0] == "Abuse" and m.actions[-1] == "Normal" and len(m.actions) == 14
    rows = by_name(m)
    assert {k: (r["split"], r["action"], r["anomaly"], r["fps"]) for k, r in rows.items()} == {
        "Arson001_x264": ("train", "Arson", True, 30.0),
        "Normal_Videos001_x264": ("train", "Normal", False, 30.0),
        "Arson011_x264": ("test", "Arson", True, 30.0),
        "RoadAccidents002_x264": ("test", "RoadAccidents", True, 30.0),
        "Normal_Videos_003_x264": ("test", "Normal", False, 30.0),
    }
    assert "Training_Normal_Videos_Anomaly" in rows["Normal_Videos001_x264"]["uri"]
    arson = rows["Arson011_x264"]["anomaly_segments"]  # frames 150-420 and 680-1267 at 30 fps
    assert arson == [{"start": 5.0, "end": 14.0}, {"start": 680 / 30, "end": 1267 / 30}]
    assert rows["RoadAccidents002_x264"]["anomaly_segments"] == [{"start": 1.0, "end": 2.0}]
    assert rows["Normal_Videos_003_x264"]["anomaly_segments"] == [] == rows["Arson001_x264"]["anomaly_segments"]
    m25, _ = built(tmp_path, "ucf_crime", tmp_path / "crime", fps=25)
    r25 = by_name(m25)["Arson011_x264"]
    assert r25["fps"] == 25.0 and r25["anomaly_segments"][0] == {"start": 6.0, "end": 16.8}


def test_ucf_crime_layout_errors(tmp_path):
    root = ucf_crime_tree(tmp_path / "crime")
    ann = "Anomaly_Detection_splits/Temporal_Anomaly_Annotation.txt"
    write(root, ann, "Arson011_x264.mp4  Arson  150  420\n")
    with pytest.raises(BuilderError, match=r"Temporal_Anomaly_Annotation.txt:1: expected"):
        build("ucf_crime", str(root), str(tmp_path / "o.parquet"))
    write(root, ann, "Arson011_x264.mp4  Riot  150  420  -1  -1\n")
    with pytest.raises(BuilderError, match="unknown UCF-Crime class 'Riot'"):
        build("ucf_crime", str(root), str(tmp_path / "o.parquet"))
    (root / ann).unlink()
    with pytest.raises(BuilderError, match="Temporal_Anomaly_Annotation.txt"):
        build("ucf_crime", str(root), str(tmp_path / "o.parquet"))
    with pytest.raises(BuilderError, match="fps"):
        build("ucf_crime", str(root), str(tmp_path / "o.parquet"), fps=0)


# --- NTU RGB+D 60 ---------------------------------------------------------------------------------
def ntu_tree(root: Path) -> Path:
    touch(root, "nturgb+d_rgb/S001C001P001R001A004_rgb.avi", "nturgb+d_rgb/S001C002P003R002A001_rgb.avi",
          "nturgb+d_rgb/S002C003P001R001A060_rgb.avi",
          "nturgb+d_rgb/S018C001P041R001A001_rgb.avi", "nturgb+d_rgb/S001C001P001R001A061_rgb.avi")  # NTU-120 only
    write(root, "subject_gender.csv", "subject,gender\n1,female\nP003,M\n")
    return root


def test_ntu60(tmp_path):
    m, _ = built(tmp_path, "ntu60", ntu_tree(tmp_path / "ntu"))
    assert len(m.actions) == 60 and m.actions[3] == "brushing hair" and m.actions[59] == "walking apart from each other"
    assert {k: (r["split"], r["action_id"], r["subject_id"], r["gender"]) for k, r in by_name(m).items()} == {
        "S001C001P001R001A004_rgb": ("train", 3, "P001", "female"),  # P001 is a cross-subject training subject
        "S001C002P003R002A001_rgb": ("test", 0, "P003", "male"),
        "S002C003P001R001A060_rgb": ("train", 59, "P001", "female"),
    }
    mv, _ = built(tmp_path, "ntu60", tmp_path / "ntu", protocol="xview")
    assert {k: r["split"] for k, r in by_name(mv).items()} == {
        "S001C001P001R001A004_rgb": "test", "S001C002P003R002A001_rgb": "train", "S002C003P001R001A060_rgb": "train"}
    (tmp_path / "ntu/subject_gender.csv").unlink()  # the table is optional: genders stay empty
    m0, _ = built(tmp_path, "ntu60", tmp_path / "ntu")
    assert set(m0.table["gender"].to_pylist()) == {None}


def test_ntu60_layout_errors(tmp_path):
    root = ntu_tree(tmp_path / "ntu")
    with pytest.raises(BuilderError, match="genders.csv"):
        build("ntu60", str(root), str(tmp_path / "o.parquet"), genders=str(tmp_path / "genders.csv"))
    write(root, "subject_gender.csv", "subject,sex\n1,female\n")
    with pytest.raises(BuilderError, match=r"subject_gender.csv: missing CSV column\(s\) \['gender'\]"):
        build("ntu60", str(root), str(tmp_path / "o.parquet"))
    write(root, "subject_gender.csv", "subject,gender\nbob,female\n")
    with pytest.raises(BuilderError, match=r"subject_gender.csv:2: expected 'subject,gender'"):
        build("ntu60", str(root), str(tmp_path / "o.parquet"))
    (empty := tmp_path / "empty").mkdir()
    with pytest.raises(BuilderError, match="S001C001P001R001A001_rgb.avi"):
        build("ntu60", str(empty), str(tmp_path / "o.parquet"))


# --- registry and CLI -----------------------------------------------------------------------------
def test_registry_and_options(tmp_path):
    assert set(BUILDERS) >= {"ucf101", "hmdb51", "kinetics400", "vispr", "thumos14", "ucf_crime", "ntu60",
                             "pa_hmdb51", "vp_hmdb51", "vp_ucf101", "toyota_smarthome", "casia_b"}
    with pytest.raises(BuilderError, match="unknown dataset 'ucf102'"):
        build("ucf102", str(tmp_path), str(tmp_path / "o.parquet"))
    with pytest.raises(BuilderError, match=r"ucf101: unknown option\(s\) \['fps'\]"):
        build("ucf101", str(tmp_path), str(tmp_path / "o.parquet"), fps=30)


def test_cli(tmp_path, capsys):
    root, out = ucf101_tree(tmp_path / "UCF101"), tmp_path / "m" / "ucf.parquet"
    assert main(["ucf101", str(root), str(out), "--split", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"ucf101: 3 rows (test=1, train=2), 3 actions -> {out}"
    assert len(read_manifest(str(out))) == 3
    assert main(["ucf_crime", str(root), str(out), "--fps", "25"]) == 2
    assert "missing annotation file 'Anomaly_Train.txt'" in capsys.readouterr().err
