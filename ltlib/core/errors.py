"""Error types that tell a user what went wrong and what to do about it."""


class LtlibError(Exception):
    """Base class of every error ltlib raises on purpose."""


class ConfigError(LtlibError, ValueError):
    """A run configuration names an unknown option or an impossible value."""


class DataError(LtlibError, RuntimeError):
    """A data set is missing, truncated, corrupt or in an unexpected format."""


class CheckpointError(LtlibError, RuntimeError):
    """A checkpoint file cannot be read: truncated, corrupt or not a checkpoint."""


class TrainingDivergedError(LtlibError, RuntimeError):
    """The training loss became NaN or infinite."""


class DeviceMemoryError(LtlibError, RuntimeError):
    """What a run would put on its device does not fit in the device's free memory."""
