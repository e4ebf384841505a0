"""Session-wide test settings: offline, CPU, quiet."""

import os

# No test may reach the network: model hubs are offline, DeepSpeed runs on CPU.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
