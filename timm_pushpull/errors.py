"""The package's own exception types for mistakes in what the user asked for.

``timm-pushpull`` prints a :class:`UserError` as one line and exits with status 2 (see
:mod:`timm_pushpull_cli`); any other exception is a bug and keeps its traceback. Each type also
derives from the built-in exception its callers caught before it existed (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

import socket

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
    "hub_unreachable",
    "is_network_failure",
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


# How a failed connection ends under every HTTP stack huggingface_hub has used (requests, httpx,
# httpx2): their own error types differ, but each is caused by one of these socket errors.
_NETWORK_CAUSES = (ConnectionError, TimeoutError, socket.gaierror, socket.herror)


def is_network_failure(error: BaseException) -> bool:
    """Whether ``error`` or an exception in its cause chain is a failed connection (refused,
    unknown host, timed out)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, _NETWORK_CAUSES):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def hub_unreachable(
    repo: str,
    action: str,
    hint: str = "",
    cache_helps: bool = True,
    kind: type[UserError] = OfflineError,
) -> UserError:
    """The one-line error for a Hugging Face Hub repository that is needed and cannot be had:
    it names the repository and ``HF_HUB_OFFLINE``; ``hint`` says what else to do, and
    ``cache_helps`` whether the local cache could serve it (a download, not an upload). ``kind``
    is its type: a model missing from the cache is also a missing file, like a local one."""
    from huggingface_hub import is_offline_mode  # deferred: this module is imported by the CLI

    if is_offline_mode():
        why = (
            f"{repo} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 keeps the Hub off"
        )
    elif cache_helps:
        why = (
            f"the Hugging Face Hub cannot be reached for {repo} (no network?) and it is not in "
            f"the local cache; set HF_HUB_OFFLINE=1 to work from the cache only"
        )
    else:
        why = f"the Hugging Face Hub cannot be reached for {repo} (no network?; HF_HUB_OFFLINE is unset)"
    return kind(f"{action}: {why}{'; ' + hint if hint else ''}")
