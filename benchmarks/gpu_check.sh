#!/usr/bin/env bash
# The one prepared GPU run: CUDA correctness of every training-free denoiser, then the benchmark tables at full
# CIFAR-10 scale (100,000 images of 32x32). Usage, from the repository root on a CUDA machine:
#   bash benchmarks/gpu_check.sh [SHARED]     # SHARED: a copy of ../shared (data/ and reference/pspc/)
set -uo pipefail
SHARED=${1:-../shared}
export PYTHONUNBUFFERED=1
python3 -c "import pspc_core" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 3
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 3
step() { echo; echo "== $1"; shift; timeout "$@" || echo "(step ended with status $?)"; }
step "CUDA correctness" 120 python3 benchmarks/gpu_correctness.py --shared "$SHARED"
step "PSPC, 10 latents vs 100,000 random 32x32 images" 200 python3 benchmarks/bench_pspc.py --device cuda --n-images 100000 --random --oracle-images 2000 --repeats 3
step "empirical, 100 latents vs 100,000 images" 120 python3 benchmarks/bench_empirical.py --device cuda --images 100000
