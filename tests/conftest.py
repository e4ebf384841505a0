"""Session-wide test settings: offline, CPU, quiet."""

import os

# No test may reach the network: model hubs are offline, DeepSpeed runs on CPU.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest
from toy import make_toy_store  # tests/toy.py: importable by name from any test module


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray per test module (ray.init costs seconds). address="local"
    never joins another cluster that happens to run on this machine."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture
def toy_store(tmp_path):
    return make_toy_store(tmp_path / "store")
