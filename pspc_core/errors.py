"""Errors a user can cause or meet. The command line turns each into one line, `error: ...`, and exit code 2.

Every message names the problem and, where there is one, the fix. Anything else that escapes a command is a bug
and keeps its traceback.
"""


class PspcError(Exception):
    """Base class: the message names the problem and, where possible, the fix."""


class UnknownDenoiserError(PspcError):
    """A denoiser name that no plugin registered."""


class UnknownPresetError(PspcError):
    """A preset name that no registry file defines."""


class ParameterError(PspcError):
    """An unknown, missing, ill-typed or out-of-range parameter or option."""


class PluginError(PspcError):
    """A plugin that fails to load or breaks its contract."""


class DatasetError(PspcError):
    """A dataset that is missing, empty, corrupt or inconsistent."""


class ShapeError(PspcError):
    """Tensors or files whose shapes do not fit together."""


class UnsafeCheckpointError(PspcError):
    """A checkpoint that is not a plain, safely loadable network file."""


class RunError(PspcError):
    """A run that cannot proceed as asked: its output folder is busy, its disk is full, its device is missing."""


class PspcWarning(UserWarning):
    """Something the user should know that does not stop the run (work set aside, a plugin left out); the
    command line prints it as one line, `warning: ...`."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure: numpy's MemoryError, or torch's allocators' RuntimeError (CUDA: its
    subclass OutOfMemoryError; the CPU allocator: "can't allocate memory"), which is not a MemoryError."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(exc))
