#!/usr/bin/env bash
# The one script a GPU session runs (about 8 minutes on one GPU): install what is missing, the GPU tests
# (pytest -m gpu: bf16 vs fp32 features, DeepSpeed on one GPU, the online pipeline feeding a GPU), then the
# ViT-H feature-extraction benchmark (clips/s and MFU over batch sizes). Logs and JSON go to $OUT (the
# device tool's output folder) or outputs/bench/gpu. Run from anywhere:
#
#     bash benchmarks/gpu_check.sh
#
# Each step has its own time limit so that one hang cannot eat the session; the script carries on
# after a failed step and exits non-zero at the end if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/bench/gpu}"
mkdir -p "$OUT"
status=0
step() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }

step "machine"
{ nvidia-smi -L || true; python --version; nproc; uptime; } 2>&1 | tee "$OUT/machine.txt"

step "install (only what is missing; the machine may have no network)"
if ! python -c "import splavu_ray" 2>/dev/null; then
  timeout 120 pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
fi
missing=$(python - <<'PY'
import importlib
mods = ["torch", "ray", "deepspeed", "transformers", "av", "pyarrow", "safetensors", "sklearn", "pydantic",
        "yaml", "tqdm", "pytest"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "missing modules: $missing; trying pip install -e '.[test]' (needs a package index)"
  timeout 240 pip install -q -e '.[test]' 2>&1 | tail -5 || { echo "INSTALL FAILED: $missing"; status=1; }
fi
python - <<'PY' 2>&1 | tee "$OUT/torch.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

step "pytest -m gpu"
export DS_ACCELERATOR=cuda
timeout 330 python -m pytest -q -m gpu tests/test_gpu.py -rs -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.txt" \
  | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "benchmarks/gpu_extract.py"
timeout 200 python benchmarks/gpu_extract.py --batch-sizes 1 4 16 32 64 --iters 5 --out "$OUT/gpu_extract.json" \
  --config-dir "$OUT/vith-config" 2>&1 | tee "$OUT/gpu_extract.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "done: status $status; files in $OUT"
exit $status
