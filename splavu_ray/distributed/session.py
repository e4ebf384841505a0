"""The one place splavu_ray starts or joins Ray.

``connect(cfg)`` joins the cluster named by ``ray.address`` (or ``RAY_ADDRESS``, as under
``ray job submit``), or starts a local Ray when there is none. It also sets the environment the
Ray Train workers need (:func:`worker_env`) both on this process (local workers inherit it) and in
the job's runtime environment (remote workers get it from there).
"""

from __future__ import annotations

import json
import os

from ..config import Config


def worker_env(cfg: Config) -> dict[str, str]:
    """Environment of every Ray worker of a run."""
    env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           # read by the driver and passed on to the Train controller (ray.train.v2 ENV_VARS_TO_PROPAGATE)
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(cfg.ray.report_poll_s)}
    if not cfg.scaling.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed on CPU workers (gloo process group)
    return env


def connect(cfg: Config, *, local_only: bool = False) -> None:
    """Join or start Ray once per process (a no-op when Ray is already up).

    ``local_only``: start a Ray of this process's own unless an address is configured, never joining a
    cluster that another job happens to run on this machine (benchmarks use this)."""
    import ray

    if ray.is_initialized():
        return
    env = worker_env(cfg)
    for k, v in env.items():
        os.environ.setdefault(k, v)
    address = cfg.ray.address
    if address is None and local_only and not os.environ.get("RAY_ADDRESS"):
        address = "local"
    # address None: ray.init joins RAY_ADDRESS (ray job submit) or the cluster `ray start` left on this
    # machine, else starts a local Ray. A local Ray keeps its dashboard (Ray Train V2's placement-group
    # cleaner queries the state API through it); Ray binds it to loopback by default.
    # Under `ray job submit` Ray merges our runtime_env into the job's and refuses a key set in both:
    # the job's own env_vars win.
    job_env = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")
    taken = set(((job_env.get("runtime_env") or {}).get("env_vars") or {}))
    env = {k: v for k, v in env.items() if k not in taken}
    ray.init(address=address, runtime_env={"env_vars": env} if env else None, log_to_driver=True)
