#!/usr/bin/env bash
# The GPU side of the push-pull layers (issue 25), in under 8 minutes on one GPU, printing
# everything for BENCHMARKS.md: the CUDA-only tests, the layers and the _pp_b1 models against
# their baselines (cuDNN convolutions against the layer's forms, float32 and bf16 autocast
# channels-last, eval and training steps that check their gradients are finite) and the evaluate
# command's throughput. Exits 2 without a CUDA device.
#   bash scripts/gpu_check.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
quick=False
[ "${1:-}" = "--quick" ] && quick=True
status=0

python3 - <<'PY' || exit 2
import sys, torch
if not torch.cuda.is_available():
    print("scripts/gpu_check.sh: no CUDA device (torch.cuda.is_available() is False): nothing to check")
    sys.exit(2)
print(f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, torch {torch.__version__}")
PY
date -u
uptime
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv || true

echo "== CUDA-only tests"
timeout 240 python3 -m pytest -q -rs -p no:cacheprovider -k gpu \
    tests/test_corruptions.py tests/test_layers_pushpull_edges.py || status=1

echo "== layers: conv (cuDNN) vs the exact and fast push-pull layers"
timeout 150 python3 -c "from timm_pushpull.benchmarks.layers import bench_gpu; print(bench_gpu($quick))" || status=1

echo "== _pp_b1 models vs baselines, bf16 autocast channels-last (eval, SGD training step)"
timeout 150 python3 -c "from timm_pushpull.benchmarks.models import bench_gpu_models; print(bench_gpu_models($quick))" || status=1

echo "== evaluate throughput (images/s) on the GPU"
timeout 120 python3 - "$quick" <<'PY' || status=1
import sys
from timm_pushpull.benchmarks.evaluate import format_table, run
quick = sys.argv[1] == "True"
print(format_table(run((1,), 20 if quick else 200, 8 if quick else 64, "cuda")))
PY
uptime
exit $status
