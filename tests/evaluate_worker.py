"""`timm-pushpull evaluate` with two more models, run as a process of its own by the tests that
need one (test_evaluate_parallel.py under torchrun, test_evaluate_concurrency.py alone):

- ``killable_test_resnet`` is timm's ``test_resnet`` (same architecture and weights, hence the same
  run) whose process kills itself with SIGKILL, as the kernel's OOM killer or a lost machine would,
  in the rank named by ``KILL_RANK`` before its forward pass number ``KILL_AT``; in the rank named
  by ``OTHER_WEIGHTS_RANK`` its initial weights differ (as another checkpoint on another machine).
- ``gated_test_resnet`` is ``test_resnet`` too; before its forward pass number ``GATE_AT``
  (default 1: the first) it creates the file ``$GATE/started`` and waits until ``$GATE/release``
  exists, so that a test can act while the run holds its output folder.

With ``EXIT_REPORT`` set, the process writes whether its process group still exists when the
interpreter exits (after the run's own exit handlers) to ``$EXIT_REPORT/rank<RANK>``.
"""

import atexit
import os
import signal
import sys
import time
from pathlib import Path

import timm
import torch
from timm.models import register_model

from timm_pushpull.cli import main


def _before_forward(model, number: int, action) -> None:
    """Call ``action()`` before the model's forward pass number ``number`` (from 1)."""
    calls = []

    def hook(_module, _inputs):
        calls.append(None)
        if len(calls) == number:
            action()

    model.register_forward_pre_hook(hook)


def _report_process_group() -> None:
    rank = os.environ.get("RANK", "0")
    Path(os.environ["EXIT_REPORT"], f"rank{rank}").write_text(
        str(torch.distributed.is_initialized())
    )


if os.environ.get("EXIT_REPORT"):
    # registered before the run registers any: atexit calls handlers last-in first-out
    atexit.register(_report_process_group)


@register_model
def killable_test_resnet(pretrained: bool = False, **kwargs):
    model = timm.create_model("test_resnet", pretrained=pretrained, **kwargs)
    if os.environ.get("OTHER_WEIGHTS_RANK") == os.environ.get("RANK", "0"):
        with torch.no_grad():
            next(model.parameters()).add_(1)
    if os.environ.get("KILL_RANK") == os.environ.get("RANK", "0"):
        kill = lambda: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
        _before_forward(model, int(os.environ["KILL_AT"]), kill)
    return model


@register_model
def gated_test_resnet(pretrained: bool = False, **kwargs):
    model = timm.create_model("test_resnet", pretrained=pretrained, **kwargs)
    gate = Path(os.environ["GATE"])

    def wait_for_release():
        (gate / "started").touch()
        deadline = time.monotonic() + 120
        while not (gate / "release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{gate / 'release'} never appeared")
            time.sleep(0.05)

    _before_forward(model, int(os.environ.get("GATE_AT", "1")), wait_for_release)
    return model


if __name__ == "__main__":
    sys.exit(main())
