"""Backbone weights in object storage: an s3:// folder is copied once per node into a local cache and
built like a local folder; a missing or empty one fails before any work, naming the URI."""

import os

import pytest
import torch
from s3 import s3_server, upload_folder, use

from splavu_ray.config import BackboneConfig, ConfigError, load_config
from splavu_ray.data.remote_cache import RemoteFolderError, local_copy
from splavu_ray.models.backbone import BUILTIN_DIR, build_backbone
from splavu_ray.training.preflight import check_inputs


@pytest.fixture(scope="module")
def endpoint():
    with s3_server() as url:
        yield url


def test_weights_folder_on_s3_is_copied_once_and_builds_the_same_encoder(endpoint, monkeypatch, tmp_path):
    use(monkeypatch, endpoint)
    monkeypatch.setenv("SPLAVU_WEIGHTS_CACHE", str(tmp_path / "cache"))
    uri = upload_folder(endpoint, BUILTIN_DIR / "tiny-vjepa2", "weights", "encoders/tiny-vjepa2")
    first = local_copy(uri)
    assert sorted(os.listdir(first)) == sorted(os.listdir(BUILTIN_DIR / "tiny-vjepa2") + [".splavu_listing.json"])
    stamp = os.stat(os.path.join(first, "model.safetensors")).st_mtime_ns
    assert local_copy(uri) == first and os.stat(os.path.join(first, "model.safetensors")).st_mtime_ns == stamp

    remote = build_backbone(BackboneConfig(source=uri), "cpu", 16)
    local = build_backbone(BackboneConfig(source="builtin:tiny-vjepa2"), "cpu", 16)
    clip = torch.rand(1, 16, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(remote(clip), local(clip))

    # A changed folder (a file added) is copied again; the old copy is replaced, not mixed with it.
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "README").write_text("v2")
    upload_folder(endpoint, tmp_path / "extra", "weights", "encoders/tiny-vjepa2")
    again = local_copy(uri)
    assert again == first and open(os.path.join(again, "README")).read() == "v2"


def test_a_missing_remote_folder_fails_before_any_work(endpoint, monkeypatch, tmp_path):
    use(monkeypatch, endpoint)
    monkeypatch.setenv("SPLAVU_WEIGHTS_CACHE", str(tmp_path / "cache"))
    upload_folder(endpoint, BUILTIN_DIR / "tiny-vjepa2", "weights", "encoders/tiny-vjepa2")
    with pytest.raises(RemoteFolderError, match="s3://weights/nothing-here holds no files"):
        local_copy("s3://weights/nothing-here")
    with pytest.raises(ConfigError, match="backbone.source.*s3://weights/typo holds no files"):
        check_inputs(load_config(None, ["backbone.source=s3://weights/typo"]))
    check_inputs(load_config(None, ["backbone.source=s3://weights/encoders/tiny-vjepa2"]))
    assert not (tmp_path / "cache").exists()  # the check lists; only building the encoder downloads
