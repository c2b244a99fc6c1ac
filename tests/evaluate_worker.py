"""`timm-pushpull evaluate`, run under torchrun by test_evaluate_parallel.py, with one more model:
``killable_test_resnet`` is timm's ``test_resnet`` (same architecture and weights, hence the same
run) whose process kills itself with SIGKILL, as the kernel's OOM killer or a lost machine would,
in the rank named by ``KILL_RANK`` before its forward pass number ``KILL_AT``; in the rank named by
``OTHER_WEIGHTS_RANK`` its initial weights differ (as another checkpoint on another machine)."""

import os
import signal
import sys

import timm
import torch
from timm.models import register_model

from timm_pushpull.cli import main


@register_model
def killable_test_resnet(pretrained: bool = False, **kwargs):
    model = timm.create_model("test_resnet", pretrained=pretrained, **kwargs)
    if os.environ.get("OTHER_WEIGHTS_RANK") == os.environ.get("RANK", "0"):
        with torch.no_grad():
            next(model.parameters()).add_(1)
    if os.environ.get("KILL_RANK") == os.environ.get("RANK", "0"):
        calls = []

        def count_and_die(_module, _inputs):
            calls.append(None)
            if len(calls) == int(os.environ["KILL_AT"]):
                os.kill(os.getpid(), signal.SIGKILL)

        model.register_forward_pre_hook(count_and_die)
    return model


if __name__ == "__main__":
    sys.exit(main())
