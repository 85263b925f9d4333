"""The `network` denoiser plugin: official NVlabs EDM networks, reimplemented and loaded without running their code.

Python API (imports torch on first use only, so that `pspc_network.hooks` stays light)::

    from pspc_network import load_network, convert
    net = load_network("edm-cifar10-32x32-uncond-vp.pkl")    # or a .safetensors written by convert()
    d = net(x, sigma)                                         # D(x; σ), as the official module
    convert("edm-cifar10-32x32-uncond-vp.pkl", "cifar10-uncond-vp.safetensors")

A pickle saved from a modified EDM (embedded source unlike every official EDM version) is refused; pass
`allow_modified_source=True` to `load_network` / `convert` to read it as official EDM anyway.
"""

_LAZY = {
    "load_network": "checkpoint",
    "read_checkpoint": "checkpoint",
    "save_safetensors": "checkpoint",
    "network_from": "checkpoint",
    "convert": "checkpoint",
    "build_network": "config",
    "NetworkDenoiser": "denoiser",
    "EDMPrecond": "precond",
    "VPPrecond": "precond",
    "VEPrecond": "precond",
    "iDDPMPrecond": "precond",
    "SongUNet": "songunet",
    "DhariwalUNet": "dhariwal",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pspc_network' has no attribute {name!r}")
