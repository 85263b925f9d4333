"""From the run options every command shares to ready denoisers: which denoisers (`-d`, `--preset`, `-p`,
`--network_pkl`), on which data, on which device, and the resume key that describes them.

A *choice* is one denoiser the user asked for, under a label: `-d NAME` (label NAME) or `--preset NAME` (label
the preset's name; its denoiser and parameters from the registry file). `-d` and `--preset` may be repeated and
combined (`-d pspc_sq --preset my_pspc_sq` runs both). `-p LABEL.KEY=VALUE` sets a parameter of
one choice; with a single choice `-p KEY=VALUE` suffices. `--network_pkl PATH` is the alias the registry file's
`[aliases]` table defines (`network_pkl = "network.checkpoint"`): it sets that parameter of that denoiser,
choosing it when the user named no denoiser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ParameterError, RunError, ShapeError
from ..params import parse_assignments
from ..plugins import get_denoiser_spec, list_denoisers, resolve_params
from ..presets import get_preset, load_registry


@dataclass
class Choice:
    """One denoiser the user chose: its label (file and column name), the denoiser, its raw parameters."""

    label: str
    denoiser: str
    params: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # a calibrated preset's record (its latents)


def choose(denoisers: list[str] | None, presets: list[str] | None, params: list[str] | None,
           network_pkl: str | None = None, registry=None, default: list[str] | None = None,
           reference: str | None = None) -> list[Choice]:
    """The choices of the options (see the module docstring): `reference` first if given (a denoiser or preset
    name), then the presets, then the -d names; `default` names the denoisers used when neither -d nor --preset
    is given (else the registry's default denoiser)."""
    reg = load_registry(registry)
    names = [n.strip() for item in denoisers or [] for n in item.split(",")]
    if "" in names or (reference is not None and not reference.strip()):
        option = "--reference" if "" not in names else "-d"
        raise ParameterError(f"{option} holds an empty denoiser name; name denoisers (see `pspc list`), separated "
                             "by single commas")
    choices = [_preset_choice(n, registry) for n in presets or []] + [Choice(n, n) for n in names]
    if network_pkl is not None and not network_pkl.strip():
        raise ParameterError("--network-pkl is empty; give a checkpoint path, or leave it out")
    alias = _alias(reg, "network_pkl") if network_pkl else None
    if not choices:
        if alias and not default:
            choices = [Choice(alias[0], alias[0])]
        else:
            choices = [Choice(n, n) for n in default or [reg.defaults.get("denoiser", "empirical")]]
    labels = [c.label for c in choices]
    if len(set(labels)) != len(labels):
        raise ParameterError(f"denoiser {next(l for l in labels if labels.count(l) > 1)!r} is chosen twice; "
                             "name each once")
    if reference:  # may also be among the others (its own column is then 0: a check)
        is_denoiser = reference in {s.name for s in list_denoisers()}
        choices.insert(0, Choice(reference, reference) if is_denoiser or reference not in reg.presets
                       else _preset_choice(reference, registry))
    for c in choices:
        get_denoiser_spec(c.denoiser)  # unknown names fail before anything else
    if alias:
        targets = [c for c in choices if c.denoiser == alias[0]]
        if not targets:
            raise ParameterError(f"--network-pkl sets {alias[0]}'s {alias[1]}, but {alias[0]} is not among the "
                                 f"chosen denoisers ({', '.join(c.label for c in choices)}); add -d {alias[0]}")
        for c in targets:
            c.params[alias[1]] = network_pkl
    _assign(choices, parse_assignments(params or []))
    for c in choices:
        spec = get_denoiser_spec(c.denoiser)
        for key in c.params:
            spec.param(key)  # unknown parameters fail before any data is loaded
    return choices


def _preset_choice(name: str, registry) -> Choice:
    preset = get_preset(name, registry)
    return Choice(preset.name, preset.denoiser, dict(preset.params), dict(preset.calibration))


def _alias(reg, option: str) -> tuple[str, str]:
    target = reg.aliases.get(option)
    if not target or "." not in target:
        raise ParameterError(f"--{option} has no meaning here: the registry file defines no alias for it")
    name, _, key = target.partition(".")
    return name, key


def _assign(choices: list[Choice], values: dict[str, str]) -> None:
    """Give each `[LABEL.]KEY=VALUE` to its choice (LABEL may also be a denoiser name chosen under one label)."""
    labels = list(dict.fromkeys(c.label for c in choices))
    for key, value in values.items():
        label, dot, pkey = key.rpartition(".")
        if not dot:
            if len(labels) != 1:
                raise ParameterError(f"-p {key}=... is ambiguous with {len(labels)} denoisers; write "
                                     f"-p LABEL.{key}=... with LABEL one of {', '.join(labels)}")
            targets = choices
        else:
            targets = [c for c in choices if c.label == label]
            if not targets and len({c.label for c in choices if c.denoiser == label}) == 1:
                targets = [c for c in choices if c.denoiser == label]
            if not targets:
                raise ParameterError(f"-p {key}: {label!r} is not one of the chosen denoisers ({', '.join(labels)})")
        for c in targets:
            c.params[pkey] = value


def data_source(data: str | None, registry=None) -> str:
    """--data as given, else the registry's default data."""
    if data is not None and not data.strip():
        raise ParameterError("--data is empty; give a dataset path or builtin:NAME, or leave --data out")
    return data or load_registry(registry).defaults.get("data", "builtin:shapes")


def pick_device(device: str | None) -> str:
    """--device as given (checked to exist), else this process's GPU (its own under torchrun), else the CPU."""
    import torch

    from .distributed import local_device

    if device is None:
        return local_device()
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ParameterError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RunError(f"--device {device}: this machine has no usable CUDA device (torch {torch.__version__}); "
                           "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RunError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; use cuda:0..")
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise ParameterError(f"--device {device}: pspc runs on cpu or cuda; use one of them")
    elif dev.type != "cpu" and not _available(dev.type):
        raise RunError(f"--device {device}: this torch ({torch.__version__}) has no usable {dev.type} device; use "
                       "--device cpu")
    return str(dev)


def _available(kind: str) -> bool:
    """Whether this torch build and machine have a usable `mps` or `xpu` device."""
    import torch

    if kind == "mps":
        return torch.backends.mps.is_available()
    return hasattr(torch, "xpu") and torch.xpu.is_available()


@dataclass
class Built:
    """A created denoiser and what describes it: label, name, resume key, image size."""

    label: str
    name: str
    denoiser: Any
    key: dict
    channels: int
    resolution: int
    dataset: Any = None  # the training set it was built on (its `dataset` parameter, else the run's data)


def build(choice: Choice, data, device: str, source: str | None = None) -> Built:
    """Create `choice` on `device` with the run's `data` (a loaded Dataset, or None where nothing needs it; it
    fills a `dataset` parameter) and data `source` (its name, for data-dependent defaults when not loaded),
    checking that the denoiser and the data agree on the image size."""
    from .fingerprint import dataset_fingerprint, file_fingerprint

    spec = get_denoiser_spec(choice.denoiser)
    params = resolve_params(spec, choice.params, data if data is not None else source)
    key = {}
    for p in spec.params:
        value = params.get(p.name)
        if p.type == "dataset" and value is not None:
            key[p.name] = dataset_fingerprint(value)
        elif p.type == "path" and isinstance(value, str) and _is_file(value):
            key[p.name] = file_fingerprint(value)
        else:
            key[p.name] = value
    den = spec.load_factory()(**params).to(device)
    if getattr(den, "channels", None) is None and data is None and source is not None:
        from ..dataset import load_dataset

        data = load_dataset(source)  # the denoiser does not say its image size: the data's it is
    channels = getattr(den, "channels", None) or (data.channels if data is not None else None)
    resolution = getattr(den, "resolution", None) or (data.resolution if data is not None else None)
    if channels is None:
        raise ShapeError(f"denoiser {choice.label!r} does not say its image size; pass --data")
    if data is not None and (channels, resolution) != (data.channels, data.resolution):
        raise ShapeError(f"denoiser {choice.label!r} works on {channels}x{resolution}x{resolution} images but the data "
                         f"is {data.channels}x{data.resolution}x{data.resolution}; use matching data (--data)")
    trained_on = next((params[p.name] for p in spec.params if p.type == "dataset" and params.get(p.name) is not None),
                      data)
    return Built(choice.label, choice.denoiser, den, dict(denoiser=choice.denoiser, params=key), channels, resolution,
                 trained_on)


def _is_file(value: str) -> bool:
    import os

    return os.path.exists(value)
