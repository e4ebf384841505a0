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
    }
    rows = [_row(p, "image" if p.suffix == ".png" else "video") for p in good] + [_row(p) for p in bad.values()]
    manifest = d / "m.parquet"
    write_manifest(str(manifest), rows)
    good_manifest = d / "good.parquet"
    write_manifest(str(good_manifest), [_row(p, "image" if p.suffix == ".png" else "video") for p in good])
    return {"dir": d, "manifest": manifest, "good_manifest": good_manifest, "good": good, "bad": bad}


def test_validate_reports_each_reason(mixed):
    report = validate_manifest(str(mixed["manifest"]), workers=1)
    assert report.total == 11 and report.ok == 4
    assert report.rejected == {reason: 1 for reason in mixed["bad"]}
    assert {r["uri"]: r["reason"] for r in report.rejects} == {str(p): k for k, p in mixed["bad"].items()}

    partial = validate_manifest(str(mixed["manifest"]), workers=1, strict=False)
    assert partial.ok == 5 and partial.rejected["truncated"] == 0 and partial.warned >= 1
    assert any(str(mixed["bad"]["truncated"]) == w["uri"] for w in partial.warnings)


def test_cli_end_to_end(mixed, tmp_path, capsys):
    rejects = tmp_path / "rejects.jsonl"
    assert main(["validate", str(mixed["manifest"]), "--rejects", str(rejects), "--workers", "1"]) == 1
    table = capsys.readouterr().out
    assert "4 ok, 7 rejected" in table and "truncated" in table and str(rejects) in table
    rows = read_rejects(str(rejects))
    assert sorted(r["reason"] for r in rows) == sorted(mixed["bad"])
    assert all(set(r) == {"row", "uri", "reason", "detail"} for r in rows)

    parquet = tmp_path / "rejects.parquet"
    assert main(["validate", str(mixed["manifest"]), "--rejects", str(parquet), "--json", "--workers", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["num_rejected"] == 7 and report["rejected"]["missing"] == 1
    assert len(read_rejects(str(parquet))) == 7

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
    assert sorted(r["reason"] for r in read_rejects(str(rejects))) == sorted(mixed["bad"])


def crash_on_three(x: int) -> int:
    """Stands in for a decoder that segfaults on one hostile file."""
    if x == 3:
        os._exit(1)
    return x * 10


def test_pool_survives_a_crashing_worker():
    results, crashed = {}, []
    pool_map(crash_on_three, range(6), 2, lambda item, r: results.__setitem__(item, r), crashed.append)
    assert crashed == [3] and results == {0: 0, 1: 10, 2: 20, 4: 40, 5: 50}
