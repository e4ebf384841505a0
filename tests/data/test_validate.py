import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import videos as V

from splavu_ray.data.__main__ import main
from splavu_ray.data.manifest import write_manifest
from splavu_ray.data.validate import pool_map, read_rejects, validate_manifest

REPO = Path(__file__).resolve().parents[2]


def _row(uri, media="video"):
    return {"uri": str(uri), "dataset": "t", "split": "test", "media": media}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A manifest with good files of several kinds and one file of each bad kind."""
    d = tmp_path_factory.mktemp("mixed")
    good = [
        V.write_video(d / "a.mp4"),
        V.write_video(d / "b.webm"),
        V.write_video(d / "c.avi", codec="mjpeg"),
        V.write_image(d / "d.png"),
    ]
    src = V.write_video(d / "src.mkv", num_frames=30)
    bad = {
        "missing": d / "missing.mp4",
        "empty": V.write_empty(d / "empty.mp4"),
        "not_video": V.write_text(d / "text.mp4"),
        "corrupt": V.write_corrupt(d / "corrupt.mp4"),
        "truncated": V.write_truncated(src, d / "truncated.mkv", 0.6),  # decodes partly
        "unreadable": V.make_unreadable(d / "folder.mp4"),
        "no_frames": V.write_no_frames(d / "none.mkv"),
        "wrong_media": V.write_image(d / "still.png"),  # a still image in a media=video row
        "too_short": V.write_video(d / "three.mp4", num_frames=3),  # < half a clip of 16
    }
    short = V.write_video(d / "ten.mp4", num_frames=10)  # >= half a clip, < a clip: kept, padded
    video_as_image = V.write_video(d / "moving.mp4")  # a video in a media=image row
    rows = ([_row(p, "image" if p.suffix == ".png" else "video") for p in good] + [_row(p) for p in bad.values()]
            + [_row(short), _row(video_as_image, "image")])
    manifest = d / "m.parquet"
    write_manifest(str(manifest), rows)
    good_manifest = d / "good.parquet"
    write_manifest(str(good_manifest), [_row(p, "image" if p.suffix == ".png" else "video") for p in good])
    return {"dir": d, "manifest": manifest, "good_manifest": good_manifest, "good": good, "bad": bad}


def test_validate_reports_each_reason(mixed):
    report = validate_manifest(str(mixed["manifest"]), workers=1)
    assert report.total == 15 and report.ok == 5
    assert report.rejected == {reason: 2 if reason == "wrong_media" else 1 for reason in mixed["bad"]}
    moving = str(mixed["dir"] / "moving.mp4")
    assert {r["uri"]: r["reason"] for r in report.rejects} == {**{str(p): k for k, p in mixed["bad"].items()},
                                                               moving: "wrong_media"}
    details = {r["uri"]: r["detail"] for r in report.rejects}
    assert all(details.values())  # every reject says why
    assert "media=video but the file is a still image" in details[str(mixed["bad"]["wrong_media"])]
    assert "media=image but the file is a video" in details[moving]
    assert "fewer than data.min_frames=8" in details[str(mixed["bad"]["too_short"])]
    # shorter than a clip but not too short: accepted, reported as padded (the fixture's 12-frame videos too)
    assert report.padded == 4 and any(w["uri"].endswith("ten.mp4") and w["warnings"][-1].startswith("padded: 10")
                                      for w in report.warnings)
    assert "4 padded" in report.summary()

    partial = validate_manifest(str(mixed["manifest"]), workers=1, strict=False)
    assert partial.ok == 6 and partial.rejected["truncated"] == 0 and partial.warned >= 1
    assert any(str(mixed["bad"]["truncated"]) == w["uri"] for w in partial.warnings)


def test_cli_end_to_end(mixed, tmp_path, capsys):
    rejects = tmp_path / "rejects.jsonl"
    assert main(["validate", str(mixed["manifest"]), "--rejects", str(rejects), "--workers", "1"]) == 1
    table = capsys.readouterr().out
    assert "5 ok, 10 rejected" in table and "truncated" in table and str(rejects) in table
    rows = read_rejects(str(rejects))
    assert sorted(r["reason"] for r in rows) == sorted([*mixed["bad"], "wrong_media"])
    assert all(set(r) == {"row", "uri", "reason", "detail"} for r in rows)

    parquet = tmp_path / "rejects.parquet"
    assert main(["validate", str(mixed["manifest"]), "--rejects", str(parquet), "--json", "--workers", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["num_rejected"] == 10 and report["rejected"]["missing"] == 1
    assert len(read_rejects(str(parquet))) == 10

    clean = tmp_path / "clean.jsonl"
    assert main(["validate", str(mixed["good_manifest"]), "--rejects", str(clean), "--workers", "1"]) == 0
    assert read_rejects(str(clean)) == []  # written even when empty: no stale rejects survive
    assert main(["validate", str(tmp_path / "no-such-manifest.parquet")]) == 2


def test_cli_as_a_module_with_a_process_pool(mixed, tmp_path):
    rejects = tmp_path / "r.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "splavu_ray.data", "validate", str(mixed["manifest"]),
         "--rejects", str(rejects), "--workers", "2"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert sorted(r["reason"] for r in read_rejects(str(rejects))) == sorted([*mixed["bad"], "wrong_media"])


def crash_on_three(x: int) -> int:
    """Stands in for a decoder that segfaults on one hostile file."""
    if x == 3:
        os._exit(1)
    return x * 10


def test_pool_survives_a_crashing_worker():
    results, crashed = {}, []
    pool_map(crash_on_three, range(6), 2, lambda item, r: results.__setitem__(item, r), crashed.append)
    assert crashed == [3] and results == {0: 0, 1: 10, 2: 20, 4: 40, 5: 50}
