"""Data-parallel evaluation: the processes of ``torchrun`` / ``accelerate launch`` share the work.

Each process evaluates a contiguous range of whole blocks of images (:func:`shard`), reading only
those from disk; per-image results are gathered in image order (:meth:`Processes.gather`), so
every process computes the numbers a single process computes for the whole set. Random draws are
seeded per block by the block's position (``evaluate.noise_seed``), hence the same draws too.
Collective operations come from Accelerate, so the same code runs on gloo (CPU) and NCCL (GPUs),
on one machine or several.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState

__all__ = ["Processes", "release_process_group_at_exit", "shard"]

_release_registered = False


def shard(count: int, block: int, rank: int, world_size: int) -> range:
    """Positions (of ``count``) that process ``rank`` of ``world_size`` evaluates: a contiguous
    run of whole ``block``-sized blocks (the last block may be short), blocks spread evenly."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    blocks = -(-count // block)
    first, last = rank * blocks // world_size, (rank + 1) * blocks // world_size
    return range(min(first * block, count), min(last * block, count))


def release_process_group_at_exit() -> None:
    """Destroy the default process group when the interpreter exits, if one is still there.

    Left to the interpreter's finalization, gloo's worker threads abort the process ("terminate
    called without an active exception", pytorch/pytorch#190489, seen here under load), and
    torchrun then stops the other processes: a finished run reported as failed, its output maybe
    unwritten. At exit rather than at once because a program may evaluate again in the same
    process (Accelerate's ``PartialState`` keeps the group it made). Call it after a run that
    finished only: destroying a group while a peer is still inside a collective can hang.
    """
    global _release_registered
    if not _release_registered:
        atexit.register(_destroy_process_group)
        _release_registered = True


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class Processes:
    """The processes evaluating together: this one's rank, their number and the collective ops.

    ``state`` is an ``accelerate.Accelerator`` or ``PartialState``; None is one process alone.
    """

    def __init__(self, state: Accelerator | PartialState | None = None):
        self.state = state
        self.rank = 0 if state is None else int(state.process_index)
        self.world_size = 1 if state is None else int(state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, count: int, block: int) -> range:
        return shard(count, block, self.rank, self.world_size)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The ``local`` rows of every process concatenated along dim 0 in rank order, on every
        process and on ``local``'s device. ``local`` is 1-d, or 2-d with rows of one size on
        every process; ranks may hold different numbers of rows, none included (then ``[0]`` or
        ``[0, 0]`` of the same dtype)."""
        if self.world_size == 1:
            return local
        from accelerate.utils import gather

        device = self.state.device
        flat = local.to(device).flatten()
        lengths = gather(torch.tensor([flat.numel()], device=device)).tolist()
        rows = gather(torch.tensor([len(local)], device=device)).tolist()
        padded = torch.zeros(max(lengths), dtype=flat.dtype, device=device)
        padded[: flat.numel()] = flat
        everything = gather(padded).view(self.world_size, -1)
        pieces = [everything[rank, :length] for rank, length in enumerate(lengths)]
        gathered = torch.cat(pieces)
        if local.ndim > 1:
            gathered = gathered.view(sum(rows), -1)
        return gathered.to(local.device)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every process."""
        if self.world_size == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]

    def all_values(self, value: Any) -> list:
        """Every process's ``value``, in rank order."""
        if self.world_size == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])
