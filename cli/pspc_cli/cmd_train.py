"""`pspc train`: a small EDM trainer for the `network` plugin's architectures (CPU or one GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import Data, Device, Quiet, RegistryOpt, Seed, flag


@app.command()
def train(
    outdir: Annotated[Path, typer.Option("--outdir", "-o", help="folder for network.safetensors, the training state and loss.csv")] = Path("out/train"),
    data: Data = None,
    arch: Annotated[str, typer.Option("--arch", help="ddpmpp or ncsnpp (SongUNet), adm (DhariwalUNet)")] = "ddpmpp",
    model_channels: Annotated[int, typer.Option(*flag("--model_channels"), min=4, help="base channel count")] = 16,
    channel_mult: Annotated[str, typer.Option(*flag("--channel_mult"), help="channels per resolution, times model_channels")] = "1,2,2",
    num_blocks: Annotated[int, typer.Option(*flag("--num_blocks"), min=1, help="residual blocks per resolution")] = 1,
    attn_resolutions: Annotated[str, typer.Option(*flag("--attn_resolutions"), help="resolutions with self-attention ('' for none)")] = "16",
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=1.0, help="dropout probability")] = 0.1,
    duration_kimg: Annotated[float, typer.Option(*flag("--duration_kimg", "--duration"), min=0.001, help="training length, thousands of images")] = 200.0,
    batch: Annotated[int, typer.Option("--batch", min=1, help="images per step")] = 64,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate")] = 1e-3,
    lr_rampup_kimg: Annotated[float, typer.Option(*flag("--lr_rampup_kimg"), min=0.0, help="linear learning-rate warm-up, kimg")] = 10.0,
    ema_halflife_kimg: Annotated[float, typer.Option(*flag("--ema_halflife_kimg", "--ema"), min=0.0, help="EMA half-life, kimg")] = 500.0,
    ema_rampup: Annotated[float, typer.Option(*flag("--ema_rampup"), min=0.0, help="EMA half-life at most this fraction of the images seen")] = 0.05,
    p_mean: Annotated[float, typer.Option(*flag("--P_mean", "--p_mean"), help="mean of ln σ during training")] = -1.2,
    p_std: Annotated[float, typer.Option(*flag("--P_std", "--p_std"), min=0.0, help="standard deviation of ln σ")] = 1.2,
    xflip: Annotated[bool, typer.Option("--xflip/--no-xflip", help="random horizontal flips of training images")] = True,
    snapshot_kimg: Annotated[float, typer.Option(*flag("--snapshot_kimg", "--snap"), min=0.001, help="save network and state every this many kimg")] = 10.0,
    float16: Annotated[bool, typer.Option("--float16", help="store the network checkpoint in float16 (half the size)")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for torch")] = None,
    seed: Seed = 0,
    device: Device = None,
    registry: RegistryOpt = None,
    quiet: Quiet = False,
) -> None:
    """Train an EDM-preconditioned network with EDM's loss (Karras et al. 2022) and write network.safetensors.

    Log-normal σ (P_mean, P_std), Adam with a learning-rate warm-up, an EMA of the weights (the checkpoint holds
    the EMA), optional x-flips. Rerun the same command to resume from the last snapshot, or with a larger
    --duration_kimg to train further. For small experiments on a CPU or one GPU only: not a replacement for
    EDM's distributed trainer (no multi-GPU, mixed precision or augmentation pipeline).
    """
    import torch

    from pspc_core import load_registry
    from pspc_train.loop import TrainSettings, train as run_training

    from .runsetup import default_device

    if threads:
        torch.set_num_threads(threads)
    settings = TrainSettings(
        data=data or load_registry(registry).defaults.get("data", "builtin:shapes"), arch=arch,
        model_channels=model_channels, channel_mult=_ints(channel_mult, "--channel_mult"),
        num_blocks=num_blocks, attn_resolutions=_ints(attn_resolutions, "--attn_resolutions"), dropout=dropout,
        duration_kimg=duration_kimg, batch=batch, lr=lr, lr_rampup_kimg=lr_rampup_kimg,
        ema_halflife_kimg=ema_halflife_kimg, ema_rampup=ema_rampup, p_mean=p_mean, p_std=p_std, xflip=xflip,
        seed=seed, snapshot_kimg=snapshot_kimg, float16=float16, device=default_device(device))
    try:
        result = run_training(settings, outdir, progress=not quiet, report=lambda m: typer.echo(m, err=True))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: rerun the same command to resume from the last snapshot in {outdir}", err=True)
        raise typer.Exit(130)
    typer.echo(f"trained {result['steps']} steps ({result['kimg']:.1f} kimg), last loss {result['loss']}: {result['network']}")


def _ints(text: str, option: str) -> list[int]:
    from pspc_core.errors import ParameterError

    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ParameterError(f"{option} expects comma-separated integers, got {text!r}") from None
