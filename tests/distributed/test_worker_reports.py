"""When the Ray Train worker checkpoints and reports, and which stepper it uses (no Ray needed)."""

from splavu_ray.config import load_config
from splavu_ray.distributed.worker import _reports_at, uses_deepspeed


def test_reports_ride_with_checkpoints_unless_asked_for_more_often():
    cfg = load_config(None, ["train.checkpoint_every=10"])
    marks = [_reports_at(e, 25, cfg) for e in range(25)]
    assert [e + 1 for e, (save, _) in enumerate(marks) if save] == [10, 20, 25]  # and always the last epoch
    assert [e + 1 for e, (_, report) in enumerate(marks) if report] == [10, 20, 25]  # a checkpoint is a report
    cfg = load_config(None, ["train.checkpoint_every=10", "train.report_every=4"])
    assert [e + 1 for e in range(25) if _reports_at(e, 25, cfg)[1]] == [4, 8, 10, 12, 16, 20, 24, 25]


def test_one_fp32_worker_steps_without_deepspeed_unless_told_to():
    assert not uses_deepspeed(load_config(None, ["scaling.num_workers=1"]), 1)
    assert uses_deepspeed(load_config(None, ["scaling.num_workers=1", "deepspeed.single_worker=deepspeed"]), 1)
    assert uses_deepspeed(load_config(None, ["scaling.num_workers=1", "scaling.use_gpu=true"]), 1)  # bf16 on GPUs
    assert uses_deepspeed(load_config(None, ["scaling.num_workers=2"]), 2)
