"""Graphs for other runtimes: where the layers compute with standard PyTorch operators only.

The layers' fast paths are ``torch.library`` custom ops over C kernels (``timm_pushpull::
blur_pool2d``, ``exact_pull``, ``push_and_pull``, ``push_pull_train``, ``push_pull_response``).
``torch.compile`` and ``torch.export`` keep them as ops, but ONNX has no operator for them, so
while a model is exported to ONNX (and while a TorchScript trace records it) the layers compute the
papers' definitions with standard operators instead: the same function, equal up to float
rounding.

Why the layers switch, instead of the ops carrying ONNX translations: torch 2.14 offers no global
hook for a custom op's translation. The dynamo exporter takes onnxscript translations per call only
(``custom_translation_table``, which every user would have to pass) or from private registries
(onnxscript's torchlib registry, or ``torch._decomp``'s global table, which fake tensors also
consult for symbolic shapes in place of the ops' own fake implementations), and ``torch.library``
has no decomposition API. ``torch.onnx.is_in_onnx_export()`` is public, documented for switching
a model's code during export (``torch.onnx.ops``), and true while either exporter captures the
model: the TorchScript-based one traces it, the dynamo one runs ``torch.export(strict=False)`` (its
first strategy) in Python. A program captured with ``torch.export.export`` before the call keeps
the ops (the flag was false then, and TorchDynamo, under ``strict=True``, always reads it as
false) and does not convert: export the module itself.
"""

from __future__ import annotations

import torch


def portable_graph() -> bool:
    """Whether this call is being recorded for another runtime (ONNX export or a TorchScript trace),
    where only standard PyTorch operators may appear."""
    # is_compiling() first: it is true while torch.export captures for the dynamo exporter and
    # cheap in eager mode, where the layers ask on every call (is_in_onnx_export imports each time)
    return torch.jit.is_tracing() or (
        torch.compiler.is_compiling() and torch.onnx.is_in_onnx_export()
    )
