import math

import pytest
import torch

from splavu_ray.models.adapter import AnonymizingAdapter
from splavu_ray.models.heads import ActionHead
from splavu_ray.objectives.splavu import LossWeights, action_cross_entropy, latent_consistency, nt_xent, splavu_total


def test_nt_xent_hand_computed():
    # Two pairs in 2-D: a=(1,0), a'=(0,1); b=(-1,0), b'=(0,-1). Cosines: a.a'=0, a.b=-1, a.b'=0.
    z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    t = 0.5
    # Anchor a: positive a' (cos 0), negatives b (cos -1), b' (cos 0).
    la = -math.log(math.exp(0 / t) / (math.exp(0 / t) + math.exp(-1 / t) + math.exp(0 / t)))
    # Anchor a': positive a (0), negatives b (0), b' (-1): same value by symmetry; likewise b, b'.
    assert nt_xent(z1, z2, t).item() == pytest.approx(la, rel=1e-6)


def test_nt_xent_generic_against_explicit_loop():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    t = 0.1
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(10):
        pos = (i + 5) % 10
        num = math.exp((z[i] @ z[pos]).item() / t)
        den = sum(math.exp((z[i] @ z[k]).item() / t) for k in range(10) if k != i)
        total += -math.log(num / den)
    assert nt_xent(z1, z2, t).item() == pytest.approx(total / 10, rel=1e-5)


def test_nt_xent_rejects_bad_shapes():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4))


def test_latent_consistency_mask():
    a, b = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    b[0, 1] = 5.0
    assert latent_consistency(a, b).item() == pytest.approx(13.0)
    assert latent_consistency(a, b, torch.tensor([[True, False]])).item() == pytest.approx(1.0)


def test_total_defaults_and_sign():
    w = LossWeights()
    assert (w.w_lc, w.w_t, w.w_b) == (100.0, 1.0, 1.0)
    v = splavu_total(torch.tensor(0.01), torch.tensor(2.0), torch.tensor(3.0), w)
    assert v.item() == pytest.approx(1.0 + 2.0 - 3.0)


def test_gradients_go_where_they_should():
    torch.manual_seed(0)
    d = 16
    adapter = AnonymizingAdapter(d, layers=1, heads=4)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    head = ActionHead(d, 3)
    h = torch.randn(4, 2, d)
    s1, s2 = torch.randn(4, d), torch.randn(4, d)
    y = torch.tensor([0, 1, 2, 0])

    def grads(loss):
        adapter.zero_grad(), head.zero_grad()
        loss.backward()
        ga = sum(p.grad.abs().sum().item() for p in adapter.parameters() if p.grad is not None)
        gh = sum(p.grad.abs().sum().item() for p in head.parameters() if p.grad is not None)
        return ga, gh

    z = adapter(h)
    ga, gh = grads(latent_consistency(z, h))
    assert ga > 0 and gh == 0
    ga, gh = grads(-nt_xent(adapter(s1), adapter(s2)))
    assert ga > 0 and gh == 0
    ga, gh = grads(action_cross_entropy(head(adapter(h)), y))
    assert ga > 0 and gh > 0


def _rank_grads(rank: int, world: int, port: int, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor,
                out) -> None:
    import torch.distributed as dist

    from splavu_ray.training.steps import global_nt_xent

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        n = len(x1) // world
        weight = w.clone().requires_grad_(True)  # the shared parameter, replicated on every rank
        loss = global_nt_xent(x1[rank * n:(rank + 1) * n] @ weight, x2[rank * n:(rank + 1) * n] @ weight, 0.1)
        loss.backward()
        grad = weight.grad.clone()
        dist.all_reduce(grad)  # what data-parallel training (DeepSpeed, DDP) does: the mean over ranks
        out.put((rank, loss.item(), (grad / world).numpy()))
    finally:
        dist.destroy_process_group()


def test_nt_xent_over_two_ranks_equals_the_global_batch():
    """L_B on 2 data-parallel ranks = L_B of the whole batch in one process, in value and update: every
    other static clip of the global batch is a negative, whatever the number of workers."""
    import multiprocessing
    import socket

    torch.manual_seed(0)
    x1, x2, w = torch.randn(8, 6), torch.randn(8, 6), torch.randn(6, 5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")  # one process per rank, as on a cluster
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_grads, args=(r, 2, port, x1, x2, w, queue)) for r in range(2)]
    for p in procs:
        p.start()
    out = {}
    for _ in procs:
        rank, value, grad = queue.get(timeout=120)
        out[rank] = (value, torch.from_numpy(grad))
    for p in procs:
        p.join(timeout=60)
    assert set(out) == {0, 1}
    weight = w.clone().requires_grad_(True)
    loss = nt_xent(x1 @ weight, x2 @ weight, 0.1)
    loss.backward()
    per_rank = nt_xent(x1[:4] @ w, x2[:4] @ w, 0.1).item()  # what a rank-local loss would have been
    for rank in (0, 1):
        value, grad = out[rank]
        assert value == pytest.approx(loss.item(), rel=1e-5) and value != pytest.approx(per_rank, rel=1e-3)
        assert torch.allclose(grad, weight.grad, atol=1e-5)
