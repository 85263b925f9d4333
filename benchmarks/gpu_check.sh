#!/usr/bin/env bash
# The one prepared GPU run: CUDA correctness of every training-free denoiser, then the benchmark tables at full
# CIFAR-10 scale (100,000 images of 32x32). Usage, from the repository root on a CUDA machine:
#   bash benchmarks/gpu_check.sh [SHARED]     # SHARED: a copy of ../shared (data/ and reference/pspc/)
set -uo pipefail
SHARED=${1:-../shared}
export PYTHONUNBUFFERED=1
# Make the source tree importable with its entry points, without pip (the GPU machine has no registry).
SITE=$(mktemp -d); mkdir -p "$SITE/pspc-0.1.0.dist-info"
printf 'Metadata-Version: 2.1\nName: pspc\nVersion: 0.1.0\n' > "$SITE/pspc-0.1.0.dist-info/METADATA"
python3 -c "import tomllib; e = tomllib.load(open('pyproject.toml', 'rb'))['project']['entry-points']['pspc']; print('[pspc]'); [print(k, '=', v) for k, v in e.items()]" > "$SITE/pspc-0.1.0.dist-info/entry_points.txt" || exit 3
export PYTHONPATH="$PWD:$PWD/cli:$PWD/plugins:$SITE"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 3
step() { echo; echo "== $1"; shift; timeout "$@" || echo "(step ended with status $?)"; }
step "CUDA correctness" 90 python3 benchmarks/gpu_correctness.py --shared "$SHARED"
step "pspc compare throughput, 32 latents x 18 levels vs 100,000 images" 150 python3 benchmarks/bench_compare.py --device cuda --images 100000 --latents 32
