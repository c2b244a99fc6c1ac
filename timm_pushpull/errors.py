"""The package's own exception types for mistakes in what the user asked for.

``timm-pushpull`` prints a :class:`UserError` as one line and exits with status 2 (see
:mod:`timm_pushpull_cli`); any other exception is a bug and keeps its traceback. Each type also
derives from the built-in exception its callers caught before it existed (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

__all__ = [
    "CheckpointError",
    "FolderInUseError",
    "InvalidArgumentError",
    "MissingFileError",
    "OfflineError",
    "OutputExistsError",
    "TrainingDivergedError",
    "UnknownModelError",
    "UserError",
]


class UserError(Exception):
    """Bad input from the user: the message says which argument and what is allowed."""


class InvalidArgumentError(UserError, ValueError):
    """A value outside the allowed ones (a recipe, a hub config key, a repository id, ...)."""


class UnknownModelError(InvalidArgumentError):
    """A model name (or a folder's architecture) that timm has no entrypoint for."""


class CheckpointError(UserError, ValueError):
    """A weights file or model folder that cannot be read or does not fit the model."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a command needs) does not exist."""


class OutputExistsError(UserError, FileExistsError):
    """An output that already holds the user's files: never overwritten without being asked."""


class OfflineError(UserError, ConnectionError):
    """The command needs the Hugging Face Hub and it cannot be reached."""


class FolderInUseError(UserError, OSError):
    """An output folder that another run holds (or that cannot be created or written)."""


class TrainingDivergedError(UserError, FloatingPointError):
    """Training reached a non-finite loss or non-finite weights (a learning rate too high, ...)."""
