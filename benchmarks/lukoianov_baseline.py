"""Times Lukoianov et al.'s own PCA-locality denoiser (local_diffusion/models/pca_locality.py) in this process, for
bench_peers.py.

Their code is not among the project's baselines (CC BY-NC 4.0): give a checkout of
ottogin/locality-in-diffusion-models and a Python that has its imports (torch, diffusers, omegaconf, faiss-cpu,
tqdm). Run by bench_peers.py in a fresh process, never imported by the project:

    python lukoianov_baseline.py CODE_DIR STUBS_DIR WORK_DIR

STUBS_DIR goes last on sys.path: its torchvision stand-in serves where torchvision is not installed (their
dataset modules import it; the timed path never calls it), while their Python's own tqdm, which diffusers
needs, comes first. WORK_DIR holds images.npy (uint8 [N, C, R, R]), z.npy
([T, B, C, R, R], our convention z = x + t·ε at their noise levels) and cases.json (their DDPM timestep index per
level, repeats, threads, batch: images per step of their streaming softmax). Their model is trained on the images
(their float32 covariance and SVD, timed), called once untimed (the first call of a process pays one-time costs;
ours gets a warm-up call too), then with sqrt(ᾱ)·z at each index, as their sampler calls it: the mask is built
inside every call. Writes out.npz (their D [T, B, C, R, R] and the masks their calls used,
np.packbits of [T, D, D]) and prints one JSON line: the training seconds and, per level, the seconds of each call.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    code, stubs, work = sys.argv[1:4]
    sys.path.insert(0, str(Path(code) / "src"))
    sys.path.append(stubs)
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from local_diffusion.models.pca_locality import PCALocalityDenoiser

    work = Path(work)
    cases = json.loads((work / "cases.json").read_text())
    torch.set_num_threads(cases["threads"])
    images = torch.from_numpy(np.load(work / "images.npy")).float() / 127.5 - 1
    z_all = np.load(work / "z.npy")

    class Bundle:  # the fields of their DatasetBundle that their model reads
        name, resolution, in_channels = "cifar10", images.shape[-1], images.shape[1]
        dataloader = DataLoader(TensorDataset(images), batch_size=cases["batch"], shuffle=False)

    model = PCALocalityDenoiser(Bundle, "cpu", 10, params={"mask_threshold": 0.05, "temperature": 1.0,
                                                           "wiener_path": str(work / "wiener")})
    start = time.perf_counter()
    model.train(Bundle)
    train_s = time.perf_counter() - start
    outputs, masks, seconds = [], [], []
    model.denoise(torch.zeros_like(torch.from_numpy(z_all[0])), cases["indices"][-1])  # untimed, as ours warms up
    for i, index in enumerate(cases["indices"]):
        latents = torch.sqrt(model.scheduler.alphas_cumprod[index]) * torch.from_numpy(z_all[i])
        seconds.append([])
        for _ in range(cases["repeats"]):
            start = time.perf_counter()
            out = model.denoise(latents, index)
            seconds[-1].append(time.perf_counter() - start)
        outputs.append(out.numpy())
        masks.append(np.packbits(model._projection_mask(index)[0].numpy().astype(bool)))
        print(f"  [theirs] pca_locality index {index}: {sorted(seconds[-1])[len(seconds[-1]) // 2]:.2f} s",
              file=sys.stderr, flush=True)
    np.savez(work / "out.npz", D=np.stack(outputs), masks=np.stack(masks))
    print(json.dumps({"train": train_s, "calls": seconds}))


if __name__ == "__main__":
    main()
