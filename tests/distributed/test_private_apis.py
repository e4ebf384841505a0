"""The few places the Ray wing leans on something that is not a public Ray API, pinned so that a Ray upgrade
that moves them fails here, by name, instead of silently changing behaviour. Everything else (Optuna's
hypervolume, Tune's Optuna searcher, the sweep records) goes through public APIs or well-kept libraries."""

import logging


def test_ray_train_report_log_is_the_module_logger_we_quiet():
    # Ray Train V2 logs every ray.train.report() with its whole metrics dict at INFO through a logger named
    # after its worker-context module's file; worker._quiet_report_log raises that logger to WARNING.
    from ray.train.v2._internal.execution import context

    from splavu_ray.distributed.worker import _quiet_report_log

    assert context.logger.name == context.__file__
    _quiet_report_log()
    assert logging.getLogger(context.__file__).level == logging.WARNING


def test_ray_data_still_counts_executions_on_its_context():
    # clip_stream's one-epoch-per-execution mode seeds train clips by DataContext._execution_idx (what Ray's own
    # RandomSeedConfig(reseed_after_execution=True) uses); the behaviour across epochs is pinned end to end by
    # test_clip_stream.py::test_every_clip_arrives_exactly_once_per_epoch_across_two_nodes.
    from ray.data import DataContext

    assert isinstance(getattr(DataContext.get_current(), "_execution_idx", None), int)


def test_no_other_private_ray_or_optuna_attribute_in_the_package():
    import re
    from pathlib import Path

    pinned = {"ray.train.v2._internal.execution", "_execution_idx"}
    root = Path(__file__).resolve().parents[2] / "splavu_ray"
    found = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r"ray(?:\.\w+)*\._\w+(?:\.\w+)*|optuna(?:\.\w+)*\._\w+|\b_ot_trials\b|"
                                r"\"_execution_idx\"", text))
    assert {f.strip('"') for f in found} <= pinned, found


NO_COMPILER_SCRIPT = r"""
import os, torch, deepspeed
from splavu_ray.distributed.deepspeed_config import build_no_ops
build_no_ops()
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
deepspeed.init_distributed(dist_backend="gloo")
model = torch.nn.Linear(4, 2)
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config={
    "train_batch_size": 2, "zero_optimization": {"stage": 2}, "gradient_clipping": 1.0})
engine.backward(engine(torch.randn(2, 4)).sum())
engine.step()
from deepspeed.comm import comm
assert comm.cdb.shm_comm_op is None, "DeepSpeed built its shm op"
print("ok")
"""


def test_deepspeed_on_cpu_runs_no_compiler(tmp_path):
    # DeepSpeed's comm backend JIT-builds deepspeed_shm_comm (g++ + ninja, minutes on 2 cores) when its table
    # deepspeed.ops.__compatible_ops__ says the op can be built, and filling the table runs gcc itself;
    # deepspeed_config.build_no_ops fills it first. A ZeRO-2 engine then starts and steps with compilers that
    # only log their calls and fail, and an empty torch extensions folder stays empty.
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    bin_dir, log, ext = tmp_path / "bin", tmp_path / "compiler.log", tmp_path / "torch_extensions"
    bin_dir.mkdir()
    ext.mkdir()
    for name in ("gcc", "cc", "g++", "c++", "ninja", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++"):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\nexit 1\n")
        tool.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TORCH_EXTENSIONS_DIR": str(ext),
           "DS_ACCELERATOR": "cpu", "PORT": str(port), "CC": str(bin_dir / "gcc"), "CXX": str(bin_dir / "g++"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", NO_COMPILER_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
    assert not log.exists(), log.read_text()
    assert not any(ext.iterdir())
