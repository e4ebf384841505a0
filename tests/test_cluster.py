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

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_job_submit import (RAY, REPO, check_results, free_ports, head_flags, job_cache,  # noqa: E402
                             submit_training, token_env)

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
    assert head["resources"].get("CPU") == 0
    # setup installs this project from the synced checkout
    assert any("pip install" in c and "splavu_ray" in c for c in cfg["setup_commands"])
    assert "." in cfg["file_mounts"].values() and ".git" in cfg["rsync_exclude"]


def image_tag(path: Path) -> str:
    return load(path)["docker"]["image"]


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=lambda p: p.name)
def test_image_ray_version_equals_project_pin(path):
    import ray
    import tomllib
    from packaging.requirements import Requirement

    image = image_tag(path)
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-gpu", image)
    assert m, f"{path.name}: image {image!r} is not a pinned rayproject/ray:<version>-py3XX-gpu tag"
    version, py = m.group(1), f"{m.group(2)}.{m.group(3)}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ray_req = next(Requirement(r) for r in pyproject["dependencies"] if Requirement(r).name == "ray")
    assert version in ray_req.specifier, f"image Ray {version} outside the pin {ray_req.specifier}"
    assert version == ray.__version__, f"image Ray {version} != tested Ray {ray.__version__}"
    assert py == f"{sys.version_info.major}.{sys.version_info.minor}", "image Python != tested Python"
    assert len({image_tag(p) for p in CLOUD_YAMLS}) == 1, "all cloud YAMLs use one image"


# ------------------------------------------------------------------------------------------------
# The documentation's commands
# ------------------------------------------------------------------------------------------------

DOCS = [REPO / "docs" / "cluster.md", CLUSTER / "README.md", REPO / "README.md"]
# Tools the docs name that this project does not ship (the user's cloud CLIs and shell basics).
EXTERNAL = {"aws", "gcloud", "cd", "git", "pip", "export", "ssh", "ls"}


def documented_commands() -> list[tuple[str, list[str]]]:
    """(file, argv) for every command line in the docs' ```bash blocks."""
    cmds = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if not line or line.startswith("#"):
                    continue
                for part in re.split(r"&&|;", line):
                    argv = shlex.split(part)
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
