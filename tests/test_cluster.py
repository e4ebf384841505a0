"""Cluster-launcher YAMLs and the documented cluster workflow, without a cloud.

- every cluster/*.yaml passes Ray's own launcher preparation and schema validation;
- the Docker image's Ray equals the project's pin and the installed Ray;
- every command docs/cluster.md, cluster/README.md and README.md name exists (ray subcommands and
  their flags, python -m entry points, config overrides);
- a real `ray up cluster/local.yaml` over an ssh server on 127.0.0.1, a job submitted to it, then
  `ray down`.
"""

import copy
import getpass
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from ray_jobs import RAY, REPO, check_results, free_ports, head_flags, job_cache, submit_training, token_env  # noqa: E402

CLUSTER = REPO / "cluster"
YAMLS = sorted(CLUSTER.glob("*.yaml"))
CLOUD_YAMLS = [p for p in YAMLS if yaml.safe_load(p.read_text())["provider"]["type"] != "local"]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def start_commands(cfg: dict) -> list[str]:
    return cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]


# ------------------------------------------------------------------------------------------------
# The YAMLs
# ------------------------------------------------------------------------------------------------


def test_cluster_yamls_exist():
    assert {p.name for p in YAMLS} >= {"gpu.yaml", "gcp.yaml", "local.yaml"}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_yaml_passes_ray_launcher_validation(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = load(path)
    prepared = prepare_config(copy.deepcopy(cfg))  # what `ray up` does before touching a cloud
    validate_config(prepared)                      # Ray's ray-schema.json + its own cross-checks
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_yaml_keeps_token_auth_and_a_private_dashboard(path):
    cfg = load(path)
    for cmd in start_commands(cfg):
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd, cmd
    head = [c for c in cfg["head_start_ray_commands"] if "--head" in c]
    assert head and all("--dashboard-host=127.0.0.1" in c for c in head)
    # every node gets the token file that clients use
    assert cfg["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    text = path.read_text()
    for secret in ("aws_access_key", "aws_secret", "AKIA", "private_key_id", "BEGIN RSA", "BEGIN OPENSSH"):
        assert secret not in text


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=lambda p: p.name)
def test_cloud_yaml_node_roles(path):
    cfg = load(path)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    on_spot = lambda nc: "InstanceMarketOptions" in nc or "SPOT" in str(nc.get("scheduling", ""))  # noqa: E731
    assert not on_spot(head["node_config"]), "the head (driver, Tune) must be on-demand"
    assert len(workers) >= 2 and all(on_spot(w["node_config"]) for w in workers.values())
    assert all(w.get("min_workers", 0) == 0 for w in workers.values()), "GPU workers autoscale from zero"
    # the custom-resource contract: no work on the head but the sweeps' trial drivers
    assert head["resources"] == {"CPU": 0, "splavu_driver": 8}
    # a worker type per role, each declaring its GPUs and the accelerator type Ray detects on them
    assert {"extract", "train", "trial"} <= set(workers), sorted(workers)
    assert workers["trial"]["resources"]["GPU"] == 1, "sweep trials get one GPU each"
    for name, w in workers.items():
        acc = [r for r in w["resources"] if r.startswith("accelerator_type:")]
        assert len(acc) == 1 and w["resources"][acc[0]] == 1, f"{name}: one accelerator_type resource"
        assert w["resources"].get("GPU", 0) >= 1 and w["resources"].get("CPU", 0) >= 1, name
        assert w["max_workers"] <= cfg["max_workers"], name
    assert sum(w["max_workers"] for w in workers.values()) <= cfg["max_workers"]


# The GPU each instance type carries, as nvidia-smi names it (the providers' instance-type pages).
GPU_OF_INSTANCE = {"g6.12xlarge": "NVIDIA L4", "g6.2xlarge": "NVIDIA L4", "p4d.24xlarge": "NVIDIA A100-SXM4-40GB",
                   "g2-standard-48": "NVIDIA L4", "g2-standard-8": "NVIDIA L4", "a2-highgpu-8g": "NVIDIA A100-SXM4-40GB"}


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=lambda p: p.name)
def test_worker_accelerator_type_is_what_ray_detects(path):
    """A task that asks for accelerator_type=X must be able to land on the type that declares it: the
    declared name is the one Ray's own detection derives from the GPU's name on that node."""
    from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager

    cfg = load(path)
    for name, t in cfg["available_node_types"].items():
        if name == cfg["head_node_type"]:
            continue
        nc = t["node_config"]
        instance = nc.get("InstanceType") or nc.get("machineType")
        assert instance in GPU_OF_INSTANCE, f"{name}: add {instance}'s GPU to GPU_OF_INSTANCE"
        detected = NvidiaGPUAcceleratorManager._gpu_name_to_accelerator_type(GPU_OF_INSTANCE[instance])
        assert f"accelerator_type:{detected}" in t["resources"], (name, detected, t["resources"])


def test_scaling_accelerator_type_reaches_ray():
    """`scaling.accelerator_type=X` (the train CLI's override) becomes Ray's `accelerator_type:X` request on
    the Train workers and the embedding actors; without use_gpu it is refused before any work."""
    import ray.train

    from splavu_ray.config import ConfigError
    from splavu_ray.distributed.feature_job import _accelerator
    from splavu_ray.train import parse_args

    _, cfg = parse_args(["scaling.use_gpu=true", "scaling.accelerator_type=A100"])
    scaling = ray.train.ScalingConfig(num_workers=1, use_gpu=True, accelerator_type=cfg.scaling.accelerator_type)
    assert scaling._resources_per_worker_not_none["accelerator_type:A100"] > 0
    assert _accelerator(cfg) == {"accelerator_type": "A100"}
    assert _accelerator(parse_args(["scaling.use_gpu=true"])[1]) == {}
    with pytest.raises((ConfigError, SystemExit)):
        parse_args(["scaling.accelerator_type=A100"])


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=lambda p: p.name)
def test_sweep_concurrency_on_the_yaml_counts_only_the_asked_gpu_model(path):
    """What a sweep derives from the autoscaler config `ray up` writes on the head: 8-GPU trials fit once on
    the A100 type (1 node), three times on the L4 types (4x4 + 8x1 GPUs), four times with any GPU."""
    from ray.autoscaler._private.util import prepare_config

    from splavu_ray.config import validate
    from splavu_ray.distributed.tune import capacity_from_autoscaler, concurrency
    from splavu_ray.search.spec import load_sweep

    cap = capacity_from_autoscaler(prepare_config(load(path)))
    found = {}
    for acc in ("A100", "L4", None):
        extra = [f"base.scaling.accelerator_type={acc}"] if acc else []
        spec, base = load_sweep(REPO / "sweeps" / "adapter.yaml",
                                ["base.scaling.use_gpu=true", "base.scaling.num_workers=8", *extra])
        found[acc] = concurrency(spec, validate(base), cap)
    assert found == {"A100": 1, "L4": 3, None: 4}


def boot_commands(cfg: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands")
    cmds = [c for k in keys for c in cfg.get(k) or []]
    for t in cfg.get("available_node_types", {}).values():
        cmds += [c for k in keys for c in t.get(k) or []]
    return cmds


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_nothing_is_installed_at_boot(path):
    for cmd in boot_commands(load(path)):
        assert not re.search(r"\b(pip3?|uv|conda|mamba|apt(-get)?)\b.*\binstall\b", cmd), (
            f"{path.name} installs at boot: {cmd!r}; put it in cluster/Dockerfile (cloud) or the nodes' "
            "environment (local)")


RAY_VERSION = (CLUSTER / "RAY_VERSION").read_text().strip()


def lock_pins() -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\\n;]+)", (CLUSTER / "requirements.lock").read_text(), re.M))


def test_one_ray_version_for_client_image_lock_and_yamls():
    """cluster/RAY_VERSION is the cluster's Ray. The Dockerfile builds on Ray's image of that version, the
    lock file pins it, every cloud YAML runs an image tagged with it and checks it at setup, pyproject's
    range admits it (from 2.52 on, which has token auth) and the client tested here runs it."""
    import ray
    import tomllib
    from packaging.requirements import Requirement
    from packaging.version import Version

    assert re.fullmatch(r"\d+\.\d+\.\d+", RAY_VERSION), RAY_VERSION
    docker_from = re.findall(r"^FROM\s+(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert docker_from == [f"rayproject/ray:{RAY_VERSION}-{py}-gpu"], docker_from
    assert lock_pins().get("ray") == RAY_VERSION
    assert re.search(rf"^ray\[[a-z,]+\]=={re.escape(RAY_VERSION)}$", (CLUSTER / "requirements.in").read_text(), re.M)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ray_req = next(Requirement(r) for r in pyproject["dependencies"] if Requirement(r).name == "ray")
    assert RAY_VERSION in ray_req.specifier, f"cluster Ray {RAY_VERSION} outside the pin {ray_req.specifier}"
    assert not ray_req.specifier.contains("2.51.9"), f"{ray_req.specifier}: token authentication needs Ray >= 2.52"
    assert Version(ray.__version__) == Version(RAY_VERSION), f"client Ray {ray.__version__} != cluster {RAY_VERSION}"
    for path in CLOUD_YAMLS:
        cfg = load(path)
        image = cfg["docker"]["image"]
        assert image.rsplit(":", 1)[1] == f"{RAY_VERSION}-{py}-gpu", f"{path.name}: {image}"
        assert image.split("/")[0] != "rayproject", f"{path.name}: run the project image (cluster/Dockerfile)"
        assert any(f"ray.__version__ == '{RAY_VERSION}'" in c for c in cfg["setup_commands"]), path.name
    assert len({load(p)["docker"]["image"].rsplit("/", 1)[1] for p in CLOUD_YAMLS}) == 1, "one image everywhere"


def test_lock_file_pins_every_dependency_with_hashes():
    """The image installs exactly the lock: every project dependency is pinned there (linux x86_64,
    Python 3.11), with hashes, and the pins satisfy pyproject's ranges."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = (CLUSTER / "requirements.lock").read_text()
    pins = {canonicalize_name(k): v for k, v in lock_pins().items()}
    assert "--python-version 3.11" in text and "--python-platform x86_64-manylinux" in text
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in e for e in entries if "==" in e), "every pin carries its hashes"
    for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in cluster/requirements.lock: regenerate it (cluster/README.md)"
        assert pins[name] in req.specifier, f"lock pins {req.name}=={pins[name]}, outside {req.specifier}"
    for extra in ("deepspeed", "transformers", "torch", "boto3", "google-api-python-client"):
        assert extra in pins
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert "--require-hashes -r /tmp/splavu/requirements.lock" in dockerfile
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert all("requirements.lock" in c or "--no-deps" in c for c in installs), installs


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=lambda p: p.name)
def test_token_auth_inside_the_containers(path):
    run_options = " ".join(load(path)["docker"]["run_options"])
    assert "--env RAY_AUTH_MODE=token" in run_options


def test_aws_ssh_ingress_is_restricted():
    """Ray's launcher opens SSH to 0.0.0.0/0 in any security group it creates; gpu.yaml names its own
    group on every node type, so Ray's code creates none (checked without AWS: it returns before any
    call), and the documented rule admits a user-given CIDR, never 0.0.0.0/0."""
    from ray.autoscaler._private.aws import config as aws_config
    from ray.autoscaler._private.util import prepare_config

    default_rules = aws_config._create_default_inbound_rules({"sg-1"})
    assert any(r.get("IpRanges") == [{"CidrIp": "0.0.0.0/0"}] for r in default_rules)  # why we bring our own
    cfg = prepare_config(load(CLUSTER / "gpu.yaml"))
    groups = {tuple(t["node_config"].get("SecurityGroupIds", ())) for t in cfg["available_node_types"].values()}
    assert len(groups) == 1 and () not in groups, groups
    with mock.patch.object(aws_config, "_upsert_security_groups", side_effect=AssertionError("would create")):
        aws_config._configure_security_group(copy.deepcopy(cfg))
    assert "0.0.0.0/0" not in yaml.safe_dump(load(CLUSTER / "gpu.yaml"))  # (its comments say why not)
    ingress = [a for _, a in documented_commands() if a[:3] == ["aws", "ec2", "authorize-security-group-ingress"]]
    ssh = [a for a in ingress if "22" in a and "--cidr" in a]
    assert ssh and all(a[a.index("--cidr") + 1] not in ("0.0.0.0/0", "::/0") for a in ssh), ingress


def test_gcp_ssh_ingress_is_restricted():
    """Ray's GCP bootstrap puts nodes without networkInterfaces on the project's first subnetwork (usually
    `default`, whose default-allow-ssh admits 0.0.0.0/0); every gcp.yaml node type names the splavu-ray
    subnetwork, whose documented SSH rule admits a user-given CIDR."""
    cfg = load(CLUSTER / "gcp.yaml")
    for name, t in cfg["available_node_types"].items():
        nets = t["node_config"].get("networkInterfaces")
        assert nets and all(n["subnetwork"].endswith("/subnetworks/splavu-ray") for n in nets), name
    rules = [a for _, a in documented_commands() if a[:4] == ["gcloud", "compute", "firewall-rules", "create"]]
    flags = [" ".join(a) for a in rules]
    assert any("tcp:22" in f for f in flags), flags
    for a in rules:
        src = next((x.split("=", 1)[1] for x in a if x.startswith("--source-ranges=")), None)
        assert src and "0.0.0.0/0" not in src, a
        assert "--network=splavu-ray" in a, a


def test_aws_iam_policies():
    """The head's role may launch and end this cluster's instances and pass the worker role (iam:PassRole)
    to them, nothing wider; the workers' role has no EC2 or IAM rights."""
    import json

    cfg = load(CLUSTER / "gpu.yaml")
    head = json.loads((CLUSTER / "aws-iam-policy.json").read_text())
    worker = json.loads((CLUSTER / "aws-iam-worker-policy.json").read_text())
    json.loads((CLUSTER / "aws-trust-policy.json").read_text())
    actions = lambda pol: {a for s in pol["Statement"] for a in s["Action"]}  # noqa: E731
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags", "iam:PassRole"} <= actions(head)
    passrole = [s for s in head["Statement"] if "iam:PassRole" in s["Action"]]
    profiles = {t["node_config"]["IamInstanceProfile"]["Name"] for n, t in cfg["available_node_types"].items()
                if n != cfg["head_node_type"]}
    assert profiles == {"splavu-ray-worker"}
    assert [s["Resource"] for s in passrole] == ["arn:aws:iam::YOUR-ACCOUNT-ID:role/splavu-ray-worker"]
    terminate = next(s for s in head["Statement"] if "ec2:TerminateInstances" in s["Action"])
    assert terminate["Condition"]["StringEquals"]["ec2:ResourceTag/ray-cluster-name"] == cfg["cluster_name"]
    assert cfg["provider"]["region"] in json.dumps(head)
    assert not any(a.startswith(("ec2:", "iam:")) for a in actions(worker)), actions(worker)
    assert all(s["Resource"] != "*" or s["Action"] in (["ec2:Describe*"], ["ec2:RunInstances"], ["ec2:CreateTags"],
                                                       ["ecr:GetAuthorizationToken"]) for s in head["Statement"])


def test_gcp_roles_are_granted_as_documented():
    """Every (account, role) row of cluster/gcp-roles.md is granted by a `gcloud` command of docs/cluster.md
    to the account gcp.yaml names, including the two the autoscaler needs to create workers."""
    cfg = load(CLUSTER / "gcp.yaml")
    head_sa = cfg["available_node_types"][cfg["head_node_type"]]["node_config"]["serviceAccounts"][0]["email"]
    assert head_sa.startswith("splavu-ray-head@")
    rows = re.findall(r"^\| `(splavu-ray-\w+)` \| `(roles/[\w.]+)` \|", (CLUSTER / "gcp-roles.md").read_text(), re.M)
    assert ("splavu-ray-head", "roles/compute.instanceAdmin.v1") in rows
    assert ("splavu-ray-head", "roles/iam.serviceAccountUser") in rows
    grants = [" ".join(a) for _, a in documented_commands() if a[0] == "gcloud" and "--role" in " ".join(a)]
    for account, role in rows:
        assert any(f"{account}@" in g and f"--role={role}" in g for g in grants), (account, role)


# ------------------------------------------------------------------------------------------------
# The documentation's commands
# ------------------------------------------------------------------------------------------------

DOCS = [REPO / "docs" / "cluster.md", CLUSTER / "README.md", REPO / "README.md"]
# Tools the docs name that this project does not ship (the user's cloud CLIs and shell basics).
EXTERNAL = {"aws", "gcloud", "cd", "git", "pip", "export", "ssh", "ls", "docker", "uv", "timeout", "unshare"}


def documented_commands() -> list[tuple[str, list[str]]]:
    """(file, argv) for every command line in the docs' ```bash blocks."""
    cmds = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if not line or line.startswith("#"):
                    continue
                lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
                lexer.whitespace_split = True
                parts, argv = [], []
                for tok in lexer:  # quote-aware: a `;` inside quotes stays in its argument
                    if tok in (";", "&&", "||", "|"):
                        parts, argv = parts + [argv], []
                    else:
                        argv.append(tok)
                for argv in parts + [argv]:
                    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
                        argv = argv[1:]  # leading VAR=value assignments
                    if argv:
                        cmds.append((doc.name, argv))
    return cmds


def check_ray_command(argv: list[str]) -> None:
    """Resolve `ray <group> <sub> ...` in Ray's own click tree and check every --flag it uses."""
    import click
    from ray.scripts.scripts import cli

    cmd, i = cli, 1
    while isinstance(cmd, click.Group) and i < len(argv) and not argv[i].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), argv[i])
        assert sub is not None, f"`{' '.join(argv[:i + 1])}`: no such ray command"
        cmd, i = sub, i + 1
    assert not isinstance(cmd, click.Group), f"`{' '.join(argv)}` names a command group, not a command"
    flags = {opt for p in cmd.params for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    rest = argv[i:argv.index("--")] if "--" in argv else argv[i:]
    for arg in rest:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in flags, f"`ray {' '.join(argv[1:i])}` has no option {arg}"
    if "--" in argv:
        check_command(argv[argv.index("--") + 1:])


def check_python_module(argv: list[str]) -> None:
    assert argv[1] == "-m", f"python commands in the docs run modules: {argv}"
    module = argv[2]
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    if module == "splavu_ray.train":  # its overrides must be valid config keys and values
        from splavu_ray.train import parse_args

        parse_args([a for a in argv[3:] if a != "..."])
    if module == "splavu_ray.sweep":  # the sweep file exists and its overrides validate
        from splavu_ray.search.spec import load_sweep

        load_sweep(REPO / argv[3], [a for a in argv[4:] if a != "..."])


def check_command(argv: list[str]) -> None:
    if argv[0] == "ray":
        check_ray_command(argv)
    elif argv[0] in ("python", "python3"):
        check_python_module(argv)
    else:
        assert argv[0] in EXTERNAL, f"unknown command {argv[0]!r}: add it to the docs test if it is real"


def test_every_documented_command_exists():
    cmds = documented_commands()
    names = {" ".join(argv[:2]) for _, argv in cmds}
    # the zero-to-finished-run path must be there
    assert {"ray up", "ray job", "ray down"} <= names, names
    for doc, argv in cmds:
        try:
            check_command(argv)
        except (AssertionError, SystemExit, Exception) as exc:
            raise AssertionError(f"{doc}: `{shlex.join(argv)}`: {exc}") from None
    for doc in DOCS:  # cluster files the docs point at exist
        for ref in set(re.findall(r"cluster/[\w.-]+\.yaml", doc.read_text())):
            assert (REPO / ref).is_file(), f"{doc.name} names {ref}, which does not exist"


# ------------------------------------------------------------------------------------------------
# A real `ray up` of cluster/local.yaml over ssh on 127.0.0.1
# ------------------------------------------------------------------------------------------------

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


def sshd_skip_reason() -> str | None:
    if SSHD is None:
        return "needs an ssh server: apt-get install openssh-server (sshd not found)"
    if shutil.which("rsync") is None:
        return "needs rsync, which Ray's launcher uses for file_mounts: apt-get install rsync"
    if os.geteuid() != 0:
        return "needs root to run a private sshd that logs in as this user"
    if not port_free(22):
        return "port 22 on 127.0.0.1 is taken (Ray's launcher always connects to port 22)"
    if not can_unshare():
        return ("needs `unshare --pid` so that the `ray stop` run by `ray down` sees only this test's "
                "processes, not every Ray on the machine")
    return None


def start_sshd(folder: Path, env: dict[str, str]) -> subprocess.Popen:
    """sshd on 127.0.0.1:22, key-only, in its own PID namespace: the nodes' processes (and the
    `ray stop` of `ray down`) live there. SetEnv gives the ssh sessions this test's Ray settings."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "client_key")], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    setenv = " ".join(f"{k}={v}" for k, v in env.items())
    (folder / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1
Port 22
HostKey {folder / 'host_key'}
PidFile {folder / 'sshd.pid'}
AuthorizedKeysFile {folder / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
SetEnv {setenv}
""")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", SSHD, "-D", "-e",
                             "-f", str(folder / "sshd_config")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 30
    while port_free(22):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()[-2000:]
        time.sleep(0.2)
    return proc


def local_cluster_config(folder: Path, name: str, ports: list[int]) -> Path:
    """cluster/local.yaml with only what must differ here: this machine as the head, this test's
    ssh key and token file, and ports/paths no other Ray on the machine uses."""
    cfg = load(CLUSTER / "local.yaml")
    cfg["cluster_name"] = name
    cfg["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    cfg["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(folder / "client_key")}
    cfg["file_mounts"] = {str(folder / "node_token"): str(folder / "ray_token")}  # the token, as shipped
    bindir = str(Path(sys.executable).parent)
    head = []
    for cmd in cfg["head_start_ray_commands"]:
        if cmd.strip() == "ray stop":
            continue  # would stop other Ray instances on this shared machine; ray down still runs it
        head.append(f"export PATH={bindir}:$PATH; {cmd} --num-cpus=2 {' '.join(head_flags(*ports))}")
    cfg["head_start_ray_commands"] = head
    cfg["setup_commands"] = [f"export PATH={bindir}:$PATH; {c}" for c in cfg["setup_commands"]]
    path = folder / "local.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.skipif(sshd_skip_reason() is not None, reason=sshd_skip_reason() or "")
def test_ray_up_local_yaml_runs_a_job_then_ray_down(tmp_path, tmp_path_factory):
    folder = Path(tempfile.mkdtemp(prefix="ru", dir="/tmp"))  # short: Ray's unix sockets live below it
    try:
        env = token_env(folder)  # client side: token auth on, this test's token
        node_tmp = folder / "node"
        node_tmp.mkdir()
        # Node side (ssh sessions): token mode comes from the YAML's start commands, the token from
        # the file `ray up` copies (file_mounts), Ray's temp files from a folder of this test.
        sshd = start_sshd(folder, {"RAY_AUTH_TOKEN_PATH": folder / "node_token", "RAY_TMPDIR": node_tmp})
        gcs, dash, agent, client = ports = free_ports(4)
        name = f"splavu-test-{os.getpid()}"
        config = local_cluster_config(folder, name, ports)
        launcher_env = {**env, "RAY_TMPDIR": str(folder)}  # the launcher's lock and state files
        try:
            t0 = time.time()
            up = subprocess.run([RAY, "up", str(config), "-y", "--no-config-cache"], env=launcher_env,
                                capture_output=True, text=True, timeout=600)
            assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
            print(f"ray up: {time.time() - t0:.1f}s")
            assert (folder / "node_token").read_text() == (folder / "ray_token").read_text()
            # Token auth is on: a client without the token is turned away.
            anon = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
            denied = subprocess.run([RAY, "job", "list", f"--address=http://127.0.0.1:{dash}"],
                                    env={**anon, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
            assert denied.returncode != 0 and "Unauthorized" in denied.stderr, denied.stderr[-2000:]

            out = tmp_path / "job-out"
            proc = submit_training(dash, out, job_cache(tmp_path_factory), env, "ray-up-job")
            check_results(proc, out)

            down = subprocess.run([RAY, "down", str(config), "-y"], env=launcher_env,
                                  capture_output=True, text=True, timeout=300)
            assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
            deadline = time.time() + 60
            while not port_free(dash) and time.time() < deadline:  # ray down ran `ray stop` on the head
                time.sleep(0.5)
            assert port_free(dash) and port_free(gcs), "the head's Ray is still running after ray down"
        finally:
            # `ray stop`'s effect, scoped: ending the namespace's init ends every process in it.
            os.killpg(sshd.pid, 9)
            sshd.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
