"""Times Kamb & Ganguli's own ELS / bbELS / LS modules (utils/idealscore.py) in this process, for bench_els.py.

Run by bench_els.py in a fresh process, never imported by the project:

    python kamb_baseline.py CODE_DIR STUBS_DIR WORK_DIR

WORK_DIR holds images.npy (uint8 [N, C, R, R]), z.npy ([T, B, C, R, R], our convention z = x + t·ε), t.npy ([T]) and
cases.json ([[model, k], ...], model in ELS, bbELS, LS; repeats; threads). Their code works in their VP convention:
for our t it is given τ = atan(t)·2.016/π (float32) and x_τ = sqrt(1-β)·z with β = 1 - cos²(τπ/2.016), and returns
the score s, so D = (x_τ + β·s) / sqrt(1-β). Batches of 50 images (dividing N: their per-batch mean is then the
exact softmax). Writes out.npz (D per case, [T, B, C, R, R]) and prints one JSON line: per case, per t, the
seconds of each call.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path


def main() -> None:
    code, stubs, work = sys.argv[1:4]
    sys.path[:0] = [code, stubs]
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    from utils.idealscore import LocalEquivBordersScoreModule, LocalEquivScoreModule, LocalScoreModule
    from utils.noise_schedules import cosine_noise_schedule

    work = Path(work)
    cases = json.loads((work / "cases.json").read_text())
    torch.set_num_threads(cases["threads"])
    images = torch.from_numpy(np.load(work / "images.npy")).float() / 127.5 - 1
    data = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    z_all, t_all = np.load(work / "z.npy"), np.load(work / "t.npy")
    R = images.shape[-1]
    modules = {"ELS": LocalEquivScoreModule, "bbELS": LocalEquivBordersScoreModule, "LS": LocalScoreModule}
    outputs, seconds = {}, {}
    for model, k in cases["cases"]:
        module = modules[model](data, kernel_size=k, batch_size=50, image_size=R, schedule=cosine_noise_schedule)
        D = np.empty_like(z_all)
        times = []  # [T][repeats]
        for i, t in enumerate(t_all):
            times.append([])
            tau = torch.tensor([math.atan(t) * 2.016 / math.pi], dtype=torch.float32)
            beta = cosine_noise_schedule(tau)
            xt = torch.sqrt(1 - beta) * torch.from_numpy(z_all[i])
            for _ in range(cases["repeats"]):
                start = time.perf_counter()
                with torch.no_grad():
                    score = module(tau, xt, device=torch.device("cpu"))
                times[-1].append(time.perf_counter() - start)
            D[i] = ((xt + beta * score) / torch.sqrt(1 - beta)).numpy()
            print(f"  [theirs] {model} k={k} t={t:g}: {sorted(times[-1])[len(times[-1]) // 2]:.2f} s", file=sys.stderr,
                  flush=True)
        outputs[f"{model}_k{k}"] = D
        seconds[f"{model}_k{k}"] = times
    np.savez(work / "out.npz", **outputs)
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
