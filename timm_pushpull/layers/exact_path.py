"""Which form computes an exact push-pull layer: the one place that decides, and the measured rules.

Every form computes the paper's layer (Strisciuglio et al., 2020),
``relu(x * k + b) - alpha * relu(x * (-resize(k)) - b)``; they differ in speed only.

The first check, before any rule or :func:`force_path`: a call recorded for another runtime (ONNX
export, a TorchScript trace: :func:`.portable.portable_graph`) computes the ``"direct"`` form (a
fast layer its own, ``"fast"``), standard operators whose kernels have static shapes; ONNX has no
operator for the custom ops of the other paths. Otherwise the paths (:data:`EXACT_PATHS`), in the
order they are preferred:

* ``"shared"``: push and pull from one matrix product, C kernel (:mod:`.push_and_pull`). Stride 1,
  no dilation, one group, one pull scale; where :func:`shared_taps_pay` says so.
* ``"c_separable"``: the push convolution, and the pull as separable maps mixed by one GEMM, C
  kernel (:mod:`.exact_pull`); where :func:`separable_pays` says so.
* ``"torch_separable"``: the same pull with PyTorch's grouped convolutions, eagerly on the CPU
  where the C kernel does not run (no C compiler, bfloat16); where :func:`torch_separable_pays`
  says so.
* ``"direct"``: the push convolution and a convolution with the resized kernel, the paper's
  formulation. Everywhere else: GPUs (no rule measured there yet), TorchScript, compiled graphs
  without the C kernel.

A path whose rule picks it runs only where it can (:func:`available_paths`): the C kernels need
float32/float64 CPU tensors, a C compiler, at most ``MAX_TAPS`` taps per axis and no autocast, the
shared form also the MKL that PyTorch ships; under ``torch.compile`` and FX the custom ops are
recorded and decide again when they run. A ``fast`` layer (another kernel, not an exact form)
always runs its own path, ``"fast"``.

The rules compare costs in a convolution's multiply-adds with constants measured side by side
(``timm-pushpull bench --section pull``; BENCHMARKS.md keeps the measurements, and the machine).
Tests and benchmarks pick a path with :func:`force_path`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
from torch import Tensor

from .exact_pull import MAX_TAPS, nonzero_taps
from .exact_pull import c_kernel_runs as c_pull_runs
from .portable import portable_graph
from .push_and_pull import c_kernel_runs as c_shared_runs
from .push_and_pull import geometry_agrees, kernel_settings

EXACT_PATHS = ("shared", "c_separable", "torch_separable", "direct")

# The C separable pull costs its S = s_h*s_w maps per input channel and pixel (built, then read by
# the GEMM) plus the push conv's multiply-adds, S * (c + O) for O output channels per group; the
# direct form P * O for a P = p_h*p_w pull kernel. c: building the maps costs about what mixing them
# into this many output channels does, where the two forms tie (BENCHMARKS.md, "Pull alone, C
# separable form vs direct conv" and "The rule: direct or separable").
MAP_COST_CHANNELS = 72
# PyTorch's separable form builds its maps with grouped 1-D convolutions: about S * (c + O) per
# input channel and pixel with a larger c, and only for few input channels per group
# (BENCHMARKS.md, "Pull alone, PyTorch separable form vs direct conv").
TORCH_MAP_COST_CHANNELS = 150
SEPARABLE_MAX_IN_CHANNELS = 4
# What the shared form adds to the push convolution per output value: the push's shifted sum
# (s_h*s_w additions) and the pull's smoothing (taps_v*s_w + taps_h multiply-adds), each costing
# about this many multiply-adds of a convolution (BENCHMARKS.md, "Exact layer, stride 1: push and
# pull from one GEMM (shared) or apart", and run 16's "The rule's constant": one constant serves
# eval and training).
SHARED_TAP_COST = 2.7

_forced: str | None = None
_lane = True


def separable_pays(
    kernel_size: tuple[int, int], pull_size: tuple[int, int], out_per_group: int
) -> bool:
    """Whether the C separable pull beats the direct convolution on the CPU."""
    maps = kernel_size[0] * kernel_size[1]
    return maps * (MAP_COST_CHANNELS + out_per_group) < pull_size[0] * pull_size[1] * out_per_group


def torch_separable_pays(
    in_per_group: int,
    kernel_size: tuple[int, int],
    pull_size: tuple[int, int],
    out_per_group: int,
) -> bool:
    """Whether PyTorch's separable pull beats the direct convolution."""
    maps = kernel_size[0] * kernel_size[1]
    direct = pull_size[0] * pull_size[1] * out_per_group
    return (
        in_per_group <= SEPARABLE_MAX_IN_CHANNELS
        and maps * (TORCH_MAP_COST_CHANNELS + out_per_group) < direct
    )


def shared_taps_apply(stride, dilation, groups: int, pull_scales: int) -> bool:
    """Whether a layer's geometry has the form the shared ops compute."""
    return (
        tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1 and pull_scales == 1
    )


def shared_taps_pay(
    in_channels: int, out_channels: int, kernel_size: tuple[int, int], pull_size: tuple[int, int]
) -> bool:
    """Whether the shared form beats the push convolution + the pull's best C form on the CPU
    (both per output value, in a convolution's multiply-adds)."""
    (sh, sw), (ph, pw) = kernel_size, pull_size
    if max(sh, sw, ph, pw) > MAX_TAPS:
        return False
    added = SHARED_TAP_COST * (sh * sw + nonzero_taps(sh, ph) * sw + nonzero_taps(sw, pw))
    maps, direct = sh * sw * (MAP_COST_CHANNELS + out_channels), ph * pw * out_channels
    return added < in_channels / out_channels * min(maps, direct)


def pull_preferred_paths(pull) -> list[str]:
    """The paths whose rules pick them for an exact ``Pull`` on its own, best first (``direct``
    last, always); the geometry alone decides, so the ``Pull`` keeps them (``preferred_paths``)."""
    in_per_group, out_per_group = pull.in_per_group, pull.out_per_group
    paths = []
    if separable_pays(pull.kernel_size, pull.pull_size, out_per_group):
        paths.append("c_separable")
    if torch_separable_pays(in_per_group, pull.kernel_size, pull.pull_size, out_per_group):
        paths.append("torch_separable")
    return [*paths, "direct"]


def _shared_geometry(layer) -> bool:
    return shared_taps_apply(layer.stride, layer.dilation, layer.groups, len(layer.pulls))


def preferred_paths(layer) -> list[str]:
    """:func:`pull_preferred_paths` of a ``PushPull2d``, with ``shared`` first where it pays."""
    pull = layer.pulls[0]
    paths = list(pull.preferred_paths)
    if _shared_geometry(layer) and shared_taps_pay(
        layer.in_channels, layer.out_channels, layer.kernel_size, pull.pull_size
    ):
        paths.insert(0, "shared")
    return paths


def vmapped(x: Tensor) -> bool:
    """Whether ``x`` is batched by ``torch.func.vmap`` (which cannot give it another layout)."""
    return isinstance(x, Tensor) and torch._C._functorch.is_batchedtensor(x)


def _runs(path: str, layer, pull, x, weight) -> bool:
    """Whether ``path`` can compute a call with ``x`` here, whatever the rules say; ``layer`` is
    None for a pull computed on its own. Only the direct form runs in a graph for another runtime
    (:func:`.portable.portable_graph`). The C kernels run on CPU tensors outside autocast; in FX
    and compiled graphs the custom ops are recorded and decide again when they run (``symbolic``),
    but the shared ops also need the tensors themselves (not an FX proxy, nor a vmapped tensor:
    they decide on the grad mode and the layout). PyTorch's separable form runs eagerly on the CPU
    only: its rule was measured there, and it checks its result for infinities (which its sums of
    maps turn into NaN) to fall back to the definition."""
    if path == "direct":
        return True
    if portable_graph():
        return False
    proxy = isinstance(x, torch.fx.Proxy)
    if path == "torch_separable":
        return (
            not proxy
            and x.device.type == "cpu"
            and not torch.compiler.is_compiling()
            and not vmapped(x)
        )
    if not proxy and (x.device.type != "cpu" or torch.is_autocast_enabled("cpu")):
        return False
    symbolic = proxy or torch.compiler.is_compiling()
    if path == "c_separable":
        return proxy or c_pull_runs(x, weight, pull.pull_size, pull.sides, symbolic=symbolic)
    return (
        layer is not None
        and not proxy
        and not vmapped(x)
        and ("shared" in layer.preferred_paths or _shared_geometry(layer))
        and c_shared_runs(x, weight, pull.pull_size, layer.padding, pull.sides, symbolic=symbolic)
    )


def eager_shared(layer, x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`layer_path` gives ``"shared"`` for an eager call ``layer(x)`` on a plain
    tensor (``weight``: the layer's push kernel), from as few checks as that answer needs;
    ``False`` sends the call to :func:`layer_path`. An inference call asks this first: the Python
    around a small layer's kernel was a large part of ``resnet20_pp_b1``'s time (BENCHMARKS.md,
    run 17)."""
    if not _lane:
        return False
    if _forced is None:
        if layer.preferred_paths[0] != "shared":
            return False
    elif _forced != "shared" or layer.pull_mode != "exact" or not _shared_geometry(layer):
        return False
    # plain tensors only: subclasses (FakeTensor, DTensor, an FX proxy) take the full way; a
    # vmapped tensor is a plain one
    if type(x) is not Tensor or not x.is_cpu or torch.is_autocast_enabled("cpu"):
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or vmapped(x):
        return False
    # c_shared_runs of the layer's last eager call, by all that its answer depends on
    key = (x.shape, x.dtype, weight.shape, weight.dtype, kernel_settings())
    known = _kernel_runs.get(layer)
    if known is not None and known[0] == key:
        return known[1]
    # a push kernel replaced since the layer was built may not fit its pull: the full way raises
    geometry = layer.kernel_geometry
    runs = geometry_agrees(x.shape, weight.shape, *geometry) and c_shared_runs(x, weight, *geometry)
    _kernel_runs[layer] = (key, runs)
    return runs


# what eager_shared last found for each layer: asking c_shared_runs on every call cost more than
# its kernel saved in small layers (BENCHMARKS.md, run 17)
_kernel_runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def available_paths(layer, x) -> tuple[str, ...]:
    """The paths that can compute ``layer(x)`` here, whatever the rules say."""
    pull, weight = layer.pulls[0], layer.push.weight
    return tuple(p for p in EXACT_PATHS if _runs(p, layer, pull, x, weight))


def _choose(preferred: list[str], forced: str | None, runs) -> str:
    """The forced path if it can run (else an error naming those that can), or the first one the
    rules prefer that can; ``runs(path)`` says whether a path can."""
    if forced is None:
        return next(path for path in preferred if runs(path))
    if not runs(forced):
        can = [path for path in EXACT_PATHS if runs(path)]
        raise RuntimeError(f"force_path({forced!r}): that path cannot run here (it can: {can})")
    return forced


def _fixed_path(mode: str) -> str | None:
    """The path of a call that neither the rules nor :func:`force_path` decide: a fast layer's own
    (standard operators everywhere), and the direct form of an exact one in a graph for another
    runtime (the module's first check)."""
    if mode == "fast":
        return "fast"
    return "direct" if portable_graph() else None


def layer_path(layer, x) -> str:
    """The path that computes ``layer(x)``: ``"fast"`` for a fast layer, else one of
    :data:`EXACT_PATHS`."""
    fixed = _fixed_path(layer.pull_mode)
    if fixed is not None:
        return fixed
    pull, weight = layer.pulls[0], layer.push.weight
    return _choose(layer.preferred_paths, _forced, lambda p: _runs(p, layer, pull, x, weight))


def pull_path(pull, x, weight) -> str:
    """The path that computes an exact pull on its own (never ``"shared"``), or ``"fast"``."""
    fixed = _fixed_path(pull.mode)
    if fixed is not None:
        return fixed
    forced = None if _forced == "shared" else _forced
    return _choose(pull.preferred_paths, forced, lambda p: _runs(p, None, pull, x, weight))


@contextlib.contextmanager
def force_path(path: str | None) -> Iterator[None]:
    """Compute every exact push-pull layer with ``path`` (one of :data:`EXACT_PATHS`; ``None``:
    the rules) inside the block, for tests and benchmarks; process-wide, like ``torch.backends``
    flags. A layer that cannot run the path here (:func:`available_paths`) raises
    ``RuntimeError``; a pull computed on its own follows its rules when ``"shared"`` is forced, and
    a graph for another runtime computes the direct form whatever is forced."""
    global _forced
    if path is not None and path not in EXACT_PATHS:
        raise ValueError(f"path must be None or one of {EXACT_PATHS}, got {path!r}")
    previous, _forced = _forced, path
    try:
        yield
    finally:
        _forced = previous


@contextlib.contextmanager
def eager_lane(enabled: bool) -> Iterator[None]:
    """Let inference calls take the lane of :func:`eager_shared` inside the block, or send every
    call the full way through :func:`layer_path` (``False``; same results, the Python before the
    lane), for benchmarks; process-wide, like :func:`force_path`."""
    global _lane
    previous, _lane = _lane, bool(enabled)
    try:
        yield
    finally:
        _lane = previous
