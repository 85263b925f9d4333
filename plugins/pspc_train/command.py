"""`pspc train`: a small EDM trainer for the `network` plugin's architectures (CPU or one GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pspc_cli.options import RunOptions, run_options


@run_options("outdir", "data", "seed", "device", "quiet", outdir=Path("out/train"))
def train(
    opts: RunOptions,
    arch: Annotated[str, typer.Option("--arch", help="ddpmpp or ncsnpp (SongUNet), adm (DhariwalUNet)")] = "ddpmpp",
    model_channels: Annotated[int, typer.Option("--model-channels", min=4, help="base channel count")] = 16,
    channel_mult: Annotated[str, typer.Option("--channel-mult", help="channels per resolution, times model_channels")] = "1,2,2",
    num_blocks: Annotated[int, typer.Option("--num-blocks", min=1, help="residual blocks per resolution")] = 1,
    attn_resolutions: Annotated[str, typer.Option("--attn-resolutions", help="resolutions with self-attention ('' for none)")] = "16",
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=1.0, help="dropout probability")] = 0.1,
    duration_kimg: Annotated[float, typer.Option("--duration-kimg", "--duration", min=0.001, help="training length, thousands of images")] = 200.0,
    batch: Annotated[int, typer.Option("--batch", min=1, help="images per step")] = 64,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate")] = 1e-3,
    lr_rampup_kimg: Annotated[float, typer.Option("--lr-rampup-kimg", min=0.0, help="linear learning-rate warm-up, kimg")] = 10.0,
    ema_halflife_kimg: Annotated[float, typer.Option("--ema-halflife-kimg", "--ema", min=0.0, help="EMA half-life, kimg")] = 500.0,
    ema_rampup: Annotated[float, typer.Option("--ema-rampup", min=0.0, help="EMA half-life at most this fraction of the images seen")] = 0.05,
    p_mean: Annotated[float, typer.Option("--p-mean", help="mean of ln σ during training")] = -1.2,
    p_std: Annotated[float, typer.Option("--p-std", min=0.0, help="standard deviation of ln σ")] = 1.2,
    snapshot_kimg: Annotated[float, typer.Option("--snapshot-kimg", "--snap", min=0.001, help="save network and state every this many kimg")] = 10.0,
    float16: Annotated[bool, typer.Option("--float16", help="store the network checkpoint in float16 (half the size)")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for torch")] = None,
) -> None:
    """Train an EDM-preconditioned network with EDM's loss (Karras et al. 2022) and write network.safetensors.

    Log-normal σ (P_mean, P_std), Adam with a learning-rate warm-up, an EMA of the weights (the checkpoint holds
    the EMA), x-flips (--xflip: each image is flipped at random). Rerun the same command to resume from the last
    snapshot, or with a larger --duration-kimg to train further. For small experiments on a CPU or one GPU only:
    not a replacement for EDM's distributed trainer (no multi-GPU, mixed precision or augmentation pipeline).
    """
    import torch

    from pspc_core.runtime.lock import output_lock

    from .loop import TrainSettings, train as run_training

    if threads:
        torch.set_num_threads(threads)
    settings = TrainSettings(
        data=opts.data_source(), arch=arch,
        model_channels=model_channels, channel_mult=_ints(channel_mult, "--channel-mult"),
        num_blocks=num_blocks, attn_resolutions=_ints(attn_resolutions, "--attn-resolutions"), dropout=dropout,
        duration_kimg=duration_kimg, batch=batch, lr=lr, lr_rampup_kimg=lr_rampup_kimg,
        ema_halflife_kimg=ema_halflife_kimg, ema_rampup=ema_rampup, p_mean=p_mean, p_std=p_std, xflip=opts.xflip,
        seed=opts.seed, snapshot_kimg=snapshot_kimg, float16=float16, device=opts.pick_device())
    with output_lock(opts.outdir):
        result = run_training(settings, opts.outdir, progress=not opts.quiet, report=lambda m: typer.echo(m, err=True))
    typer.echo(f"trained {result['steps']} steps ({result['kimg']:.1f} kimg), last loss {result['loss']}: {result['network']}")


def _ints(text: str, option: str) -> list[int]:
    from pspc_core.errors import ParameterError

    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ParameterError(f"{option} expects comma-separated integers, got {text!r}") from None
