"""What a training run writes: the network checkpoint (EMA weights) and the state to resume from.

- `network.safetensors`: the EMA network's `state_dict` (official key names) with metadata `pspc_config` =
  {"class_name", "init_kwargs"}: exactly the file the `network` plugin loads. Optionally stored in float16.
- `training-state.safetensors`: raw weights (`net.`), EMA weights (`ema.`), Adam moments (`adam_m.`, `adam_v.`),
  the random generators' states (`rng.`) and, in metadata, the step count, images seen and the run's settings.

Both are written atomically (a temporary file, then a rename): an interrupted write leaves the previous file.
"""

from __future__ import annotations

import json

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pspc_core.runtime.atomic import atomic_path
from pspc_core.errors import UnsafeCheckpointError

NETWORK_FILE = "network.safetensors"
STATE_FILE = "training-state.safetensors"


def save_network(path, net: torch.nn.Module, config: dict, float16: bool = False, extra_meta: dict | None = None) -> None:
    """Write `net` as the `network` plugin's checkpoint (its one writer), atomically."""
    from pspc_network.checkpoint import save_safetensors

    with atomic_path(path) as tmp:
        save_safetensors(config, net.state_dict(), tmp, float16=float16, extra_meta=extra_meta)


def save_state(path, net, ema, optimizer: torch.optim.Optimizer, generator: torch.Generator, meta: dict) -> None:
    tensors = {}
    for prefix, module in (("net.", net), ("ema.", ema)):
        tensors.update({prefix + k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    names = [n for n, _ in net.named_parameters()]
    adam_steps = []
    for name, p in zip(names, net.parameters()):
        st = optimizer.state.get(p)
        if st:
            tensors["adam_m." + name] = st["exp_avg"].detach().cpu().contiguous()
            tensors["adam_v." + name] = st["exp_avg_sq"].detach().cpu().contiguous()
            adam_steps.append(float(st["step"]))
    tensors["rng.data"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = dict(meta, adam_step=max(adam_steps, default=0.0))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"pspc_train": json.dumps(meta)})


def _unreadable(path, exc: Exception) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(f"training state {path} is unreadable ({type(exc).__name__}); delete it to start over")


def read_state_meta(path) -> dict:
    """The metadata `save_state` wrote (step, images seen, settings), without loading any tensor: a rerun checks
    its settings against them before loading weights that might not fit its network."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["pspc_train"])
    except Exception as exc:  # truncated or foreign file
        raise _unreadable(path, exc) from None


def load_state(path, net, ema, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict:
    """Restore everything `save_state` wrote; returns its metadata (step, images seen, settings)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["pspc_train"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # truncated or foreign file
        raise _unreadable(path, exc) from None
    try:
        for prefix, module in (("net.", net), ("ema.", ema)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    except RuntimeError:  # weights of another network (a state from another pspc version, say)
        raise UnsafeCheckpointError(f"training state {path} does not fit this network; delete it to start over, "
                                    "or use another --outdir") from None
    device = next(net.parameters()).device
    for name, p in net.named_parameters():
        if "adam_m." + name in tensors:
            optimizer.state[p] = {
                "step": torch.tensor(meta["adam_step"]),
                "exp_avg": tensors["adam_m." + name].to(device),
                "exp_avg_sq": tensors["adam_v." + name].to(device),
            }
    generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta
