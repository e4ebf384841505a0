import json

import pytest
import torch

from splavu_ray.models.adapter import AdapterLoadError, AnonymizingAdapter, load_adapter, save_adapter


@pytest.mark.parametrize("kind", ["transformer", "attention", "mlp"])
def test_identity_at_init_and_shape(kind):
    torch.manual_seed(0)
    a = AnonymizingAdapter(32, kind=kind, layers=3, heads=8)
    x = torch.randn(4, 5, 32)
    y = a(x)
    assert y.shape == x.shape
    assert torch.allclose(y, x)
    assert a(x[:, 0]).shape == (4, 32)


def _perturb(a):
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize("kind", ["transformer", "attention", "mlp"])
def test_samples_do_not_mix(kind):
    torch.manual_seed(1)
    a = AnonymizingAdapter(32, kind=kind, layers=2, heads=4).eval()
    _perturb(a)
    x = torch.randn(6, 3, 32)
    full = a(x)
    for i in range(6):
        alone = a(x[i : i + 1])
        assert torch.allclose(full[i], alone[0], atol=1e-5)
    # changing another sample never changes this one
    x2 = x.clone()
    x2[1:] = torch.randn_like(x2[1:])
    assert torch.allclose(a(x2)[0], full[0], atol=1e-5)
    # but the adapter does mix clips of one video (attention) - a real sequence model
    if kind != "mlp":
        x3 = x.clone()
        x3[0, 1] = torch.randn(32)  # (a constant shift would vanish in LayerNorm)
        assert not torch.allclose(a(x3)[0, 0], full[0, 0])


def test_parameter_count_reported():
    a = AnonymizingAdapter(1280, kind="transformer", layers=3, heads=8)
    n = a.num_parameters()
    # 3 blocks x (attention 4d^2 + ff 8d^2 + biases and norms)
    assert 12 * 1280**2 * 3 < n < 12 * 1280**2 * 3 * 1.01
    assert AnonymizingAdapter(1280, kind="attention").num_parameters() < n


def test_export_roundtrip_never_unpickles(tmp_path):
    torch.manual_seed(0)
    a = AnonymizingAdapter(16, layers=2, heads=4)
    _perturb(a)
    save_adapter(a, tmp_path / "ad", metadata={"backbone": "x"})
    info = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    assert info["parameters"] == a.num_parameters() and info["metadata"] == {"backbone": "x"}
    b = load_adapter(tmp_path / "ad")
    x = torch.randn(2, 3, 16)
    assert torch.allclose(a.eval()(x), b(x), atol=1e-6)
    assert not any(p.suffix in (".pt", ".pth", ".bin", ".pkl") for p in (tmp_path / "ad").iterdir())


def test_load_errors(tmp_path):
    with pytest.raises(AdapterLoadError, match="not an adapter export"):
        load_adapter(tmp_path)
    save_adapter(AnonymizingAdapter(16, heads=4), tmp_path / "ad")
    (tmp_path / "ad" / "adapter.safetensors").write_bytes(b"garbage")
    with pytest.raises(AdapterLoadError, match="safetensors"):
        load_adapter(tmp_path / "ad")


def test_bad_width_is_clear():
    a = AnonymizingAdapter(16, heads=4)
    with pytest.raises(ValueError, match="width 16"):
        a(torch.randn(2, 8))
    with pytest.raises(ValueError, match="divisible"):
        AnonymizingAdapter(10, heads=4)
