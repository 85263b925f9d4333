"""CUDA check of the `network` plugin: each reference EDM network on CUDA (float32 and fp16) against the CPU.

Loads the three networks of ../shared/reference/edm (via our .safetensors path), runs the reference inputs on
the CPU in float32, then on CUDA with `force_fp32=True` and with the checkpoint's own fp16 setting (forced on
for the nets that do not ask for it, to exercise the half-precision path of every architecture), and prints the
max abs error per σ against the CPU outputs and against the official outputs. Also times a batch of 64.

    python benchmarks/gpu_network_check.py [--shared PATH]

Without CUDA (or without ../shared) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

NAMES = ["edm-ddpmpp-uncond-32", "vp-ddpmpp-uncond-32", "edm-adm-cond-16"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    args = parser.parse_args()

    import numpy as np
    import torch
    from safetensors.torch import load_file

    from pspc_network import load_network, save_safetensors

    ref = args.shared / "reference" / "edm"
    if not ref.is_dir():
        print(f"skipped: {ref} not found")
        return 0
    if not torch.cuda.is_available():
        print("skipped: CUDA is not available (this check compares CUDA against CPU outputs)")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    torch.backends.cudnn.allow_tf32 = False
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'network':<22} {'mode':<12} {'max |cuda - cpu| per sigma':<44} {'vs official':>11} {'tol@80':>8}")
    worst_fp32 = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in NAMES:
            path = Path(tmp) / f"{name}.safetensors"
            save_safetensors(json.loads((ref / f"{name}.json").read_text()), load_file(ref / f"{name}.safetensors"), path)
            a = {k: torch.from_numpy(v) for k, v in np.load(ref / f"{name}.npz").items()}
            x, sigma = a["x"], a["sigma"]
            kw = {"class_labels": a["class_labels"]} if "class_labels" in a else {}
            net = load_network(path)
            with torch.no_grad():
                cpu = net(x, sigma, **kw)
            net = net.to("cuda")
            asks_fp16 = bool(net.use_fp16)
            kw_cuda = {k: v.cuda() for k, v in kw.items()}
            for mode in ("float32", "fp16"):
                net.use_fp16 = asks_fp16 or mode == "fp16"
                with torch.no_grad():
                    out = net(x.cuda(), sigma.cuda(), force_fp32=mode == "float32", **kw_cuda).cpu()
                err = (out - cpu).abs().amax((1, 2, 3))
                official = (out - a["out"]).abs().amax().item()
                label = mode + ("" if mode == "float32" or asks_fp16 else "*")
                print(f"{name:<22} {label:<12} {' '.join(f'{e:.2e}' for e in err.tolist()):<44} {official:>11.2e} "
                      f"{1e-5 * 81:>8.1e}")
                if mode == "float32":
                    worst_fp32 = max(worst_fp32, float((err / (1e-5 * (1 + sigma))).max()))
            net.use_fp16 = asks_fp16
            xb = x.cuda().repeat(16, 1, 1, 1)
            sb = sigma.cuda().repeat(16)
            kb = {k: v.repeat(16, 1) for k, v in kw_cuda.items()}
            for mode in ("float32", "fp16") if asks_fp16 else ("float32",):
                with torch.no_grad():
                    net(xb, sb, force_fp32=mode == "float32", **kb)
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(10):
                        net(xb, sb, force_fp32=mode == "float32", **kb)
                    torch.cuda.synchronize()
                print(f"{name:<22} {mode:<12} batch 64: {(time.perf_counter() - t0) / 10 * 1e3:.2f} ms per call")
    print("* fp16 forced on for a net whose checkpoint does not ask for it (use_fp16=False)")
    print(f"float32 CUDA vs CPU, worst error / (1e-5·(1 + σ)): {worst_fp32:.3f}"
          f" ({'within' if worst_fp32 <= 1 else 'OUTSIDE'} the reference tolerance)")
    return 0 if worst_fp32 <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
