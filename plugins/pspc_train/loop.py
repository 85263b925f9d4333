"""The training loop: sample a batch, EDM loss, Adam step (learning-rate ramp-up), EMA update, and every
`snapshot_kimg` thousand images an atomic snapshot that a rerun resumes from."""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from pspc_core.runtime.atomic import atomic_path
from pspc_core.errors import ParameterError, RunError
from pspc_core.runtime.progress import Progress

from .checkpoint import NETWORK_FILE, STATE_FILE, load_state, read_state_meta, save_network, save_state
from .ema import ema_beta, update_ema
from .init import init_edm_weights
from .loss import edm_loss

ARCHS = ("ddpmpp", "ncsnpp", "adm")
LOG_FILE = "loss.csv"
# Settings that may change between a run and its resumption (how long, how often to save, where).
RESUMABLE_CHANGES = ("duration_kimg", "snapshot_kimg", "device", "float16")


@dataclass
class TrainSettings:
    data: str = "builtin:shapes"
    arch: str = "ddpmpp"                    # ddpmpp / ncsnpp (SongUNet) or adm (DhariwalUNet)
    model_channels: int = 16                # base channel count
    channel_mult: list = field(default_factory=lambda: [1, 2, 2])
    num_blocks: int = 1                     # residual blocks per resolution
    attn_resolutions: list = field(default_factory=lambda: [16])
    dropout: float = 0.1
    duration_kimg: float = 200.0            # training length in thousands of images
    batch: int = 64
    lr: float = 1e-3
    lr_rampup_kimg: float = 10.0            # linear learning-rate warm-up
    ema_halflife_kimg: float = 500.0
    ema_rampup: float = 0.05                # EMA half-life is at most this fraction of the images seen
    p_mean: float = -1.2                    # log-normal σ sampling
    p_std: float = 1.2
    sigma_data: float = 0.5
    xflip: bool = True                      # random horizontal flips
    seed: int = 0
    snapshot_kimg: float = 10.0             # save network + training state this often
    float16: bool = False                   # store the network checkpoint in float16
    device: str = "cpu"


def check_settings(s: TrainSettings) -> None:
    """Refuse values no run can use, before any data is loaded: a NaN or infinite number would train to NaNs
    (or overflow the step count), a zero or negative channel multiplier builds no network."""
    for key, value in asdict(s).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ParameterError(f"--{key.replace('_', '-')} must be a finite number, got {value}")
    if not s.channel_mult or min(s.channel_mult) < 1:
        raise ParameterError("--channel-mult needs one or more positive integers (channels per resolution, "
                             f"e.g. 1,2,2), got {','.join(map(str, s.channel_mult)) or 'none'}")


def network_config(s: TrainSettings, resolution: int, channels: int) -> dict:
    """The {"class_name", "init_kwargs"} description of an EDM-preconditioned network with these settings."""
    from pspc_network.config import make_config

    if s.arch not in ARCHS:
        raise ParameterError(f"--arch must be one of {', '.join(ARCHS)}, got {s.arch!r}")
    if resolution % (2 ** (len(s.channel_mult) - 1)):
        raise ParameterError(f"{resolution}x{resolution} images cannot be halved {len(s.channel_mult) - 1} times; "
                             "use fewer --channel-mult levels")
    resolutions = [resolution >> level for level in range(len(s.channel_mult))]
    unused = [r for r in s.attn_resolutions if r not in resolutions]
    if unused and list(s.attn_resolutions) != TrainSettings().attn_resolutions:  # asked for, silently absent
        # (the default, 16, simply has no effect on a network without that resolution)
        raise ParameterError(f"--attn-resolutions {','.join(map(str, unused))} is not a resolution of this network; "
                             f"choose among {','.join(map(str, resolutions))} (or '' for none)")
    kwargs = dict(img_resolution=resolution, img_channels=channels, label_dim=0, use_fp16=False,
                  sigma_data=s.sigma_data, model_channels=s.model_channels, channel_mult=list(s.channel_mult),
                  num_blocks=s.num_blocks, attn_resolutions=list(s.attn_resolutions), dropout=s.dropout)
    if s.arch == "ddpmpp":
        kwargs.update(model_type="SongUNet", embedding_type="positional", encoder_type="standard",
                      decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1])
    elif s.arch == "ncsnpp":
        kwargs.update(model_type="SongUNet", embedding_type="fourier", encoder_type="residual",
                      decoder_type="standard", channel_mult_noise=2, resample_filter=[1, 3, 3, 1])
    else:
        kwargs.update(model_type="DhariwalUNet")
    return make_config("EDMPrecond", kwargs)


def learning_rate(s: TrainSettings, images_seen: int) -> float:
    return s.lr * min(images_seen / max(s.lr_rampup_kimg * 1000, 1e-8), 1.0)


def train(s: TrainSettings, outdir: Path, progress: bool = True, report: Callable[[str], None] = print) -> dict:
    """Train (or resume) in `outdir`; returns {"steps", "kimg", "loss", "network"}."""
    from pspc_core import load_dataset
    from pspc_network.config import build_network

    outdir = Path(outdir)
    check_settings(s)
    dataset = load_dataset(s.data)
    config = network_config(s, dataset.resolution, dataset.channels)
    device = torch.device(s.device)
    net = init_edm_weights(build_network(config), seed=s.seed).to(device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=s.lr, betas=(0.9, 0.999), eps=1e-8)
    generator = torch.Generator().manual_seed(s.seed)
    images = dataset.images

    step, nimg, rows, seconds = 0, 0, [], 0.0
    state_path = outdir / STATE_FILE
    if state_path.exists():
        _check_same_run(read_state_meta(state_path)["settings"], s, outdir)  # before loading mismatched weights
        meta = load_state(state_path, net, ema, optimizer, generator)
        step, nimg, seconds = meta["step"], meta["nimg"], meta.get("seconds", 0.0)
        rows = [r for r in _read_log(outdir / LOG_FILE) if int(r["step"]) <= step]
        report(f"resuming from step {step} ({nimg / 1000:.1f} kimg)")
    total = math.ceil(s.duration_kimg * 1000 / s.batch)
    bar = Progress(total, "training", enable=progress, done=step)
    next_snapshot = (nimg // _snapshot_images(s) + 1) * _snapshot_images(s)
    losses, start = [], time.monotonic() - seconds
    n_params = sum(p.numel() for p in net.parameters())
    if step == 0:
        report(f"training {s.arch} ({n_params / 1e6:.2f}M parameters) on {dataset.describe()} for {total} steps")

    with bar:
        while step < total:
            idx = torch.randint(len(images), (s.batch,), generator=generator)
            x = images[idx].to(torch.float32) / 127.5 - 1
            if s.xflip:
                flip = torch.rand(s.batch, generator=generator) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x = x.to(device)
            lr = learning_rate(s, nimg + s.batch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = edm_loss(net, x, generator, s.p_mean, s.p_std, s.sigma_data)
            optimizer.zero_grad(set_to_none=True)
            (loss.sum() / s.batch).backward()
            for p in net.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            optimizer.step()
            step, nimg = step + 1, nimg + s.batch
            update_ema(ema, net, ema_beta(s.batch, nimg, s.ema_halflife_kimg, s.ema_rampup))
            losses.append(float(loss.detach().mean()))
            _check_finite(losses[-1], step, nimg)
            bar.advance()
            if nimg >= next_snapshot or step == total:
                mean_loss = sum(losses) / len(losses)
                _check_finite(mean_loss, step, nimg, net, ema)
                rows.append({"step": step, "kimg": f"{nimg / 1000:.3f}", "loss": f"{mean_loss:.6f}", "lr": f"{lr:.3g}",
                             "seconds": f"{time.monotonic() - start:.1f}"})
                _snapshot(outdir, s, config, net, ema, optimizer, generator, step, nimg, rows, time.monotonic() - start)
                report(f"step {step}/{total} ({nimg / 1000:.1f} kimg): loss {mean_loss:.4f}, lr {lr:.3g}")
                losses, next_snapshot = [], next_snapshot + _snapshot_images(s)
    return {"steps": step, "kimg": nimg / 1000, "loss": rows[-1]["loss"] if rows else None,
            "network": outdir / NETWORK_FILE}


def _snapshot_images(s: TrainSettings) -> int:
    return max(int(s.snapshot_kimg * 1000), 1)


def _snapshot(outdir, s, config, net, ema, optimizer, generator, step, nimg, rows, seconds) -> None:
    info = {"pspc_train": f"EDM loss, {nimg} images seen in {step} steps, arch {s.arch}, data {s.data}"}
    save_network(outdir / NETWORK_FILE, ema, config, float16=s.float16, extra_meta=info)
    save_state(outdir / STATE_FILE, net, ema, optimizer, generator, {"step": step, "nimg": nimg, "seconds": seconds,
                                                                          "settings": asdict(s)})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "kimg", "loss", "lr", "seconds"])
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(outdir / LOG_FILE) as tmp:
        tmp.write_text(buf.getvalue())


def _check_finite(loss: float, step: int, nimg: int, *modules: torch.nn.Module) -> None:
    """Stop a diverged run (a NaN or infinite loss, or such weights in `modules`) at once: it must neither save
    NaNs as its network nor claim success. Snapshots from earlier, finite steps stay."""
    weights = (t for m in modules for t in m.state_dict().values() if t.is_floating_point())
    if not math.isfinite(loss) or not all(bool(torch.isfinite(t).all()) for t in weights):
        raise RunError(f"training diverged at step {step} ({nimg / 1000:.3f} kimg): the loss or the weights are no "
                       "longer finite; lower --lr or bring --p-mean/--p-std nearer their defaults (-1.2, 1.2), "
                       "in a new --outdir")


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_same_run(saved: dict, s: TrainSettings, outdir: Path) -> None:
    now = asdict(s)
    differ = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if differ:
        k = differ[0]
        raise ParameterError(f"{outdir} holds a run with {k}={saved.get(k)!r}, not {now[k]!r}; "
                             "resume it with the same settings, or use another --outdir")
