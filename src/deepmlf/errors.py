"""Errors a user can act on. The CLI prints their message (no traceback) and exits with code 2."""


class DeepMLFError(Exception):
    """Base class: the message names the file, key or option and what was expected."""


class DataError(DeepMLFError):
    """An MMSA pickle (or a split/key inside it) is not what deepmlf expects."""


class ConfigError(DeepMLFError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class BackboneError(DeepMLFError):
    """A backbone name or path cannot be resolved offline, or its architecture is unsupported."""


class CheckpointError(DeepMLFError):
    """A checkpoint is missing, corrupt, or belongs to a different configuration."""


class RunDirError(DataError):
    """A run directory (or a file in it: metrics, gates, config) is missing or unreadable."""


class WriteError(DeepMLFError):
    """A file or directory could not be written (disk full, read-only, a path below a file, ...).

    Raised before any work where the output can be checked up front, else at the failing write;
    either way the files written before are left as they were (writes are atomic, deepmlf.io).
    """
