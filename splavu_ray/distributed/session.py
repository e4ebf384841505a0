"""The one place splavu_ray starts or joins Ray.

``connect(cfg)`` joins the cluster named by ``ray.address``, else by ``RAY_ADDRESS`` (as under
``ray job submit``); with neither it starts a fresh local Ray of its own, and never joins a cluster
that ``ray start`` happens to have left on this machine. Its first output line says which. A cluster
it cannot join (unreachable, wrong token) fails at once with a message that names the fix. It also sets
the environment the Ray Train workers need (:func:`worker_env`) both on this process (local workers
inherit it) and in the job's runtime environment (remote workers get it from there).

Sweep trial drivers run where the custom resource ``splavu_driver`` is (:data:`DRIVER_RESOURCE`): a cluster's
head advertises it (cluster yamls: head ``resources: {"CPU": 0, "splavu_driver": 8}``), a fresh local Ray
started here advertises :data:`LOCAL_DRIVER_SLOTS` of it; ``connect(cfg, driver_slots=True)`` (the sweep)
refuses a joined cluster without it, naming the fix.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
from urllib.parse import urlsplit

from ..config import Config, ConfigError

# Seconds to wait for a cluster's head to accept a TCP connection before giving up on it.
REACH_TIMEOUT_S = 5.0
# The custom Ray resource a sweep trial's driver holds (one unit, and no CPU): only the head has it, so
# drivers (and the sweep's files on their disk) never land on a spot worker.
DRIVER_RESOURCE = "splavu_driver"
# How many of it a fresh local Ray advertises: as many trial drivers as a cluster head (cluster/*.yaml); how
# many trials really run at once on one machine is bounded by its CPUs/GPUs (splavu_ray.distributed.tune).
LOCAL_DRIVER_SLOTS = 8


class ClusterJoinError(ConfigError):
    """The configured Ray cluster cannot be joined. The message names the address and the fix."""


def worker_env(cfg: Config) -> dict[str, str]:
    """Environment of every Ray worker of a run."""
    env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           # read by the driver and passed on to the Train controller (ray.train.v2 ENV_VARS_TO_PROPAGATE)
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(cfg.ray.report_poll_s)}
    if not cfg.scaling.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed on CPU workers (gloo process group)
    return env


def target(cfg: Config) -> tuple[str, str]:
    """(address for ray.init, where it came from): ``ray.address``, else ``RAY_ADDRESS``, else "local"."""
    if cfg.ray.address:
        return cfg.ray.address, "ray.address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return "local", "neither ray.address nor RAY_ADDRESS is set"


def check_reachable(address: str, source: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Fail at once when a HOST:PORT (or ray://HOST:PORT) head does not accept connections, instead of
    Ray's own retries followed by a traceback."""
    if address in ("local", "auto") or "://" in address and not address.startswith("ray://"):
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    if not parts.hostname or parts.port is None:
        raise ClusterJoinError(f"Ray address {address!r} (from {source}) is not HOST:PORT; give the head's GCS "
                               "address, e.g. 10.0.0.5:6379, or ray.address=local for a Ray of this process's own")
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
    except OSError as exc:
        raise ClusterJoinError(
            f"cannot reach the Ray cluster at {address} (from {source}): {exc.strerror or exc}. Is the head up "
            "(`ray status` on it) and its port open to this machine? Unset RAY_ADDRESS (or set ray.address=local) "
            "to run on a fresh local Ray instead") from None


def connect(cfg: Config, driver_slots: bool = False) -> None:
    """Join the configured cluster or start a fresh local Ray, once per process (a no-op when Ray is up).

    A fresh local Ray advertises ``splavu_driver`` (:data:`LOCAL_DRIVER_SLOTS`). ``driver_slots`` (a sweep):
    fail, naming the fix, when the Ray joined has no ``splavu_driver`` for the trial drivers."""
    import ray

    if ray.is_initialized():
        if driver_slots:
            check_driver_slots()
        return
    env = worker_env(cfg)
    for k, v in env.items():
        os.environ.setdefault(k, v)
    address, source = target(cfg)
    if address == "local":
        print(f"[splavu] Ray: starting a fresh local Ray on this machine ({source})", flush=True)
    else:
        print(f"[splavu] Ray: joining the cluster at {address} (from {source})", flush=True)
        check_reachable(address, source)
        # Ray retries a head that refuses this client (e.g. a wrong token) for ~20 s; 5 s is plenty for a
        # head that accepted the TCP connection above (an operator's own setting wins).
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "5")
    # A local Ray keeps its dashboard (Ray Train V2's placement-group cleaner queries the state API
    # through it); Ray binds it to loopback by default.
    # Under `ray job submit` Ray merges our runtime_env into the job's and refuses a key set in both:
    # the job's own env_vars win.
    job_env = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")
    taken = set(((job_env.get("runtime_env") or {}).get("env_vars") or {}))
    env = {k: v for k, v in env.items() if k not in taken}
    try:
        ray.init(address=address, runtime_env={"env_vars": env} if env else None, log_to_driver=True,
                 **({"resources": {DRIVER_RESOURCE: LOCAL_DRIVER_SLOTS}} if address == "local" else {}))
    except Exception as exc:  # noqa: BLE001 - Ray raises several types here; the user needs the fix, not a trace
        if address == "local":
            raise
        raise ClusterJoinError(join_failure(address, source, exc)) from None
    if address != "local":
        print(f"[splavu] Ray: joined ({len(ray.nodes())} node(s), resources {ray.cluster_resources()})", flush=True)
    if driver_slots:
        check_driver_slots()


def check_driver_slots() -> None:
    """The Ray this process is connected to must advertise ``splavu_driver`` (where sweep trial drivers run)."""
    import ray

    if ray.cluster_resources().get(DRIVER_RESOURCE, 0) < 1:
        raise ClusterJoinError(
            f"the Ray cluster has no {DRIVER_RESOURCE!r} resource, which a sweep's trial drivers hold (one each, "
            f"no CPU) so that they run on the head node. Fix: give the head node that resource, in the cluster "
            f"yaml `available_node_types.<head type>.resources: {{\"CPU\": 0, \"{DRIVER_RESOURCE}\": 8}}` or with "
            f"`ray start --head --resources='{{\"{DRIVER_RESOURCE}\": 8}}'` (docs/sweeps.md)")


def ray_version() -> str:
    """This process's Ray version (the client side of a join), as installed."""
    from importlib.metadata import version

    return version("ray")


def join_failure(address: str, source: str, exc: BaseException) -> str:
    """The message for a cluster that answered but could not be joined."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    chain, cause = [], exc
    while cause is not None and len(chain) < 8:  # Ray wraps the reason (e.g. a bad token) in its cause
        chain.append(str(cause).lower())
        cause = cause.__cause__ or cause.__context__
    mismatch = next((c for c in chain if "version mismatch" in c), None)
    if mismatch is not None:
        # Ray's text: "The cluster was started with: Ray: X Python: Y This process ... Ray: X' Python: Y'"
        theirs = re.search(r"cluster was started with:\s*ray:\s*(\S+)\s*python:\s*(\S+)", mismatch)
        cluster = f"Ray {theirs.group(1)} and Python {theirs.group(2)}" if theirs else "the cluster's versions"
        fix = (f"the cluster runs {cluster}, this client Ray {ray_version()} and Python {platform.python_version()}; "
               "Ray joins only equal versions. Install the cluster's Ray here (`pip install "
               "'ray[default,train,tune,data]==VERSION'`, VERSION from cluster/RAY_VERSION, the cluster image's tag), or "
               "submit with `ray job submit`, whose driver runs on the head (docs/cluster.md)")
    elif any("auth" in c or "token" in c for c in chain):
        fix = ("the cluster uses token authentication and this client's token does not match: set RAY_AUTH_MODE=token "
               "and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token (docs/cluster.md)")
    else:
        fix = ("check the address, that this client's Ray and Python versions match the cluster's, and the "
               "cluster's auth settings (docs/cluster.md); or unset RAY_ADDRESS / set ray.address=local")
    return f"cannot join the Ray cluster at {address} (from {source}): {text}. Fix: {fix}"
