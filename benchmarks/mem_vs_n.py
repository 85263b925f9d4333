"""Peak memory of one call of each denoiser at N and at 2N training images: what grows with N, and by how much.

Ours only (no timing): for each denoiser, a fresh process builds it on the first N images (no flips) and on all
2N (with flips), makes one warm-up call and then one measured call; printed are the resident memory the denoiser
keeps (after the warm-up, above the level before it was built) and the peak of the measured call (above the
level before it). glibc returns freed blocks at once (fixed 128 KiB thresholds), so resident memory follows live
memory.

    python benchmarks/mem_vs_n.py [--batch 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import ctypes, gc, json, re, sys
from pathlib import Path
import torch
sys.path.insert(0, {here!r})
from bench_speed import CASES, latents, our_data, smooth_heatmaps, HEATMAPS16
libc = ctypes.CDLL("libc.so.6"); libc.mallopt(-3, 128 * 1024); libc.mallopt(-1, 128 * 1024)
torch.set_num_threads(2)
def kib(key):
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
from pspc_core import Dataset, create_denoiser
case = [c for c in CASES if c.name == {name!r} and c.label == {label!r}][0]
full = our_data(case.res)
data = full if {full} else Dataset(full.images[: len(full) // 2].clone())
del full
params = dict(case.ours)
if case.name == "pspc_flex" and not HEATMAPS16.exists():
    params["heatmaps"] = smooth_heatmaps(case.res)
gc.collect(); before = kib("VmRSS")
den = create_denoiser(case.name, dataset=data, **params)
z = latents(case.res, {batch}, case.t, data)
den(z, case.t)
gc.collect(); kept = (kib("VmRSS") - before) / 1024
Path("/proc/self/clear_refs").write_text("5"); base = kib("VmRSS")
den(z, case.t)
print(json.dumps({{"n": len(data), "kept": kept, "peak": (kib("VmHWM") - base) / 1024,
                   "images_mib": data.images.numel() / 2**20}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args()
    from bench_speed import CASES

    print(f"{'denoiser':<10} {'params':<9} {'N':>6} {'images MiB':>10} {'kept MiB':>9} {'call peak MiB':>13}")
    for case in CASES:
        for full in (False, True):
            code = CHILD.format(here=str(HERE), name=case.name, label=case.label, full=full, batch=args.batch)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{case.name:<10} {case.label:<9} {r['n']:>6} {r['images_mib']:>10.1f} {r['kept']:>9.1f} "
                  f"{r['peak']:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
