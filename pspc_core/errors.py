"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class PspcError(Exception):
    """Base class: the message names the problem and, where possible, the fix."""


class UnknownDenoiserError(PspcError):
    """A denoiser or preset name that no plugin registered."""


class ParameterError(PspcError):
    """An unknown, missing or ill-typed denoiser parameter."""


class PluginError(PspcError):
    """A plugin that clashes with another or breaks its contract."""


class DatasetError(PspcError):
    """A dataset that is missing, empty, corrupt or inconsistent."""


class ShapeError(PspcError):
    """Tensors or files whose shapes do not fit together."""


class UnsafeCheckpointError(PspcError):
    """A checkpoint that is not a plain, safely loadable network file."""
