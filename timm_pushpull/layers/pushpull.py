"""Push-pull inhibition convolution, a drop-in replacement for ``nn.Conv2d``.

Strisciuglio, Lopez-Antequera, Petkov, "Enhanced robustness of convolutional networks with a
push-pull inhibition layer", Neural Computing and Applications 32 (2020).
Unrectified, channel-attention and multi-scale variants: Ranabhat et al. (2025), "multi-scale
unrectified push-pull with channel attention".

    response = relu(x * k + b) - alpha * relu(x * k_pull - b),  k_pull = -resize(k, h)

The state dict holds ``push.weight`` (``push.bias``, ``alpha`` when used) exactly like the authors'
layer, so their checkpoints load by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SEModule, register_notrace_function
from torch import Tensor
from torch.nn.modules.utils import _pair

from . import exact_path
from .attention import SimAM
from .exact_pull import output_format
from .pull import MAX_PULL_SCALE, PULL_MODES, Pull
from .push_and_pull import eager_response, inference_response

ATTENTION_TYPES = (None, "se", "simam")
LEARN_ALPHA = (False, True, "channel", "scalar")
FIXED_ALPHA = 1.0  # alpha of every released model (Strisciuglio et al., 2020)
LEARNED_ALPHA_CENTRE = 0.5  # where the authors' code initialises a learned alpha


@register_notrace_function
def _check_input_channels(x: Tensor, in_channels: int) -> None:
    # An FX leaf, for torch.fx and timm's feature extraction alike: it runs at call time, not trace time.
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"PushPull2d expects input of shape [N, in_channels={in_channels}, H, W], "
            f"got {list(x.shape)}"
        )


torch.fx.wrap("_check_input_channels")


@register_notrace_function
def _in_input_layout(out: Tensor, x: Tensor) -> Tensor:
    """``out`` in the layout ``nn.Conv2d`` gives for ``x``, though some forms compute in another:
    a response in another layout makes the rest of a model convert around every convolution
    (BENCHMARKS.md, exact pull run 11), and under DDP gives gradients whose strides do not match
    the buckets'."""
    if torch.jit.is_scripting():
        return out  # TorchScript runs the direct forms, whose output is in the input's layout
    return _in_conv_layout(out, x)


@torch.jit.unused
def _in_conv_layout(out: Tensor, x: Tensor) -> Tensor:
    if exact_path.vmapped(x):
        return out  # vmap cannot query or change the layout
    return out.contiguous(memory_format=output_format(x))


torch.fx.wrap("_in_input_layout")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _padding_pair(padding: int | tuple[int, int] | str, kernel_size, stride, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same" and all(k % 2 == 1 for k in kernel_size) and max(stride) == 1:
            return tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation))
        raise ValueError(
            f"padding must be an int, a pair of ints, 'valid', or 'same' (odd kernel, stride 1), got {padding!r}"
        )
    return _pair(padding)


def _kernel_geometry(layer: PushPull2d) -> tuple[list[int], list[int], list[int]]:
    """``(pull_size, push_padding, pull_padding)``: the geometry arguments of
    :mod:`.push_and_pull`'s ops for a layer (its one pull's)."""
    pull = layer.pulls[0]
    return list(pull.pull_size), list(layer.padding), list(pull.sides)


def _attention_layer(
    attention: str | None, channels: int, reduction: int, device, dtype
) -> nn.Module:
    if attention == "se":
        return SEModule(
            channels, rd_ratio=1.0 / reduction, rd_divisor=1, device=device, dtype=dtype
        )
    if attention == "simam":
        return SimAM()
    return nn.Identity()


class PushPull2d(nn.Module):
    """Push-pull inhibition layer; positional arguments as ``nn.Conv2d``.

    Args:
        pull_scale: ``h`` in ``(0, 64]``, the factor by which the pull kernel is larger than the
            push kernel (pull size ``floor(s*h)``, +1 when even; ``h = 1`` keeps the size; below 1
            it is smaller). A sequence of more than one value gives the multi-scale variant: ``V_i = push - alpha * pull_i``, concat
            ``[push, V_1..V_S]``, channel attention, 1x1 conv back to ``out_channels``.
        alpha: inhibition strength when fixed (finite, >= 0; default 1.0, as in the papers), or the centre
            of the uniform initialisation ``alpha +- 1/sqrt(C_in*C_out)`` when learned (default
            0.5, the authors' centre); kept as ``alpha_init``.
        learn_alpha: ``False``, ``True``/``"channel"`` (one per output channel) or ``"scalar"``;
            alpha enters as ``relu(alpha)``.
        rectify: ``False`` gives the unrectified variant ``push - alpha * pull``.
        attention: ``None``, ``"se"`` (squeeze-excitation with ``attention_reduction``) or
            ``"simam"`` (parameter-free), applied to the push response.
        pull_mode: ``"exact"`` (the paper's kernel) or ``"fast"`` (see :mod:`.pull`).

    The inhibition strength in use is always ``layer.alpha``: a parameter when learned (in the
    state dict as ``alpha``, like the authors' layer), else a constant 0-dim buffer outside the
    state dict (so checkpoints of fixed-alpha layers hold only the push kernel).

    An exact layer is computed by one of several forms, picked per call by :mod:`.exact_path`
    (:func:`.exact_path.force_path` chooses one); all give the paper's result, its NaNs and
    infinities included. The output has the layout ``nn.Conv2d``'s would have for the same input
    in every mode (under ``torch.func.vmap``: the layout of the form that computed it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        *,
        pull_scale: float | Sequence[float] = 2.0,
        alpha: float | None = None,
        learn_alpha: bool | str = False,
        rectify: bool = True,
        attention: str | None = None,
        attention_reduction: int = 16,
        pull_mode: str = "exact",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        scales = tuple(pull_scale) if isinstance(pull_scale, Sequence) else (pull_scale,)
        if not scales or not all(_is_number(h) and 0 < h <= MAX_PULL_SCALE for h in scales):
            raise ValueError(
                f"pull_scale (h) must be a number in (0, {MAX_PULL_SCALE:g}] or a non-empty "
                f"sequence of them, got {pull_scale!r}"
            )
        if alpha is None:
            alpha = LEARNED_ALPHA_CENTRE if learn_alpha else FIXED_ALPHA
        if not (_is_number(alpha) and 0 <= alpha < math.inf):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, value in (
            ("kernel_size", kernel_size),
            ("stride", stride),
            ("dilation", dilation),
        ):
            if not all(isinstance(v, int) and v >= 1 for v in _pair(value)):
                raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {value!r}")
        if not isinstance(padding, str) and not all(
            isinstance(v, int) and v >= 0 for v in _pair(padding)
        ):
            raise ValueError(
                f"padding must be an int >= 0, a pair of them, 'valid' or 'same', got {padding!r}"
            )
        if learn_alpha not in LEARN_ALPHA:
            raise ValueError(f"learn_alpha must be one of {LEARN_ALPHA}, got {learn_alpha!r}")
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"attention must be one of {ATTENTION_TYPES}, got {attention!r}")
        if pull_mode not in PULL_MODES:
            raise ValueError(f"pull_mode must be one of {PULL_MODES}, got {pull_mode!r}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups must divide in_channels ({in_channels}) and out_channels ({out_channels}), got {groups}"
            )
        kernel_size, stride, dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        padding = _padding_pair(padding, kernel_size, stride, dilation)

        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size,
            stride,
            padding,
            dilation,
        )
        self.groups = groups
        self.pull_scale = scales if len(scales) > 1 else scales[0]
        self.rectify = rectify
        self.learn_alpha = learn_alpha
        self.alpha_init = float(alpha)
        self.pull_mode = pull_mode
        self.attention_type = attention

        self.push = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            device=device, dtype=dtype,
        )  # fmt: skip
        self.pulls = nn.ModuleList(
            Pull(
                in_channels,
                out_channels,
                kernel_size,
                h,
                stride,
                padding,
                dilation,
                groups,
                mode=pull_mode,
                device=device,
                dtype=dtype,
            )  # fmt: skip
            for h in scales
        )
        if learn_alpha:
            shape = (1, 1, 1, 1) if learn_alpha == "scalar" else (1, out_channels, 1, 1)
            self.alpha = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        else:
            # 0-dim, so that it never promotes the dtype of the response (autocast)
            self.register_buffer(
                "alpha", torch.empty((), device=device, dtype=dtype), persistent=False
            )
        # read on every call: made once
        self.kernel_geometry = _kernel_geometry(self)
        # how calls are computed where they can be, by the measured rules (:mod:`.exact_path`)
        self.preferred_paths = (
            exact_path.preferred_paths(self) if pull_mode == "exact" else ["fast"]
        )
        fused_channels = out_channels * (len(scales) + 1) if len(scales) > 1 else out_channels
        self.attention = _attention_layer(
            attention, fused_channels, attention_reduction, device, dtype
        )
        if len(scales) > 1:
            self.fuse = nn.Conv2d(
                fused_channels, out_channels, 1, bias=False, device=device, dtype=dtype
            )
        else:
            self.fuse = nn.Identity()
        self.reset_parameters()

    @property
    def weight(self) -> Tensor:
        """The push kernel (the only kernel with parameters), as ``nn.Conv2d.weight``."""
        return self.push.weight

    @property
    def bias(self) -> Tensor | None:
        return self.push.bias

    def reset_parameters(self) -> None:
        self.push.reset_parameters()
        with torch.no_grad():
            if self.learn_alpha:
                # The authors' initialisation of the learned inhibition strength.
                fan = (self.in_channels * self.out_channels) ** -0.5
                nn.init.uniform_(self.alpha, self.alpha_init - fan, self.alpha_init + fan)
            else:
                self.alpha.fill_(self.alpha_init)
        if isinstance(self.fuse, nn.Conv2d):
            self.fuse.reset_parameters()
        if isinstance(self.attention, SEModule):
            self.attention.fc1.reset_parameters()
            self.attention.fc2.reset_parameters()

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, pull_scale={self.pull_scale}, pull_mode={self.pull_mode}"
        )
        if self.learn_alpha:
            s += f", learn_alpha={self.learn_alpha}"
        else:
            s += f", alpha={self.alpha_init}"
        if not self.rectify:
            s += ", rectify=False"
        if self.attention_type is not None:
            s += f", attention={self.attention_type}"
        return s

    def _inhibit(self, push: Tensor, pull: Tensor, inplace: bool = False) -> Tensor:
        if inplace:
            return push.addcmul_(pull, F.relu(self.alpha), value=-1.0)
        return torch.addcmul(push, F.relu(self.alpha), pull, value=-1.0)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "kernel_geometry" not in self.__dict__:  # a layer pickled before it existed
            self.kernel_geometry = _kernel_geometry(self)

    @torch.jit.unused
    def _eager_shared(self, x: Tensor) -> Tensor | None:
        """The response of an eager call that takes the shared path, with little Python around
        the kernel: the checks that this call's answer needs, no more
        (:func:`.exact_path.eager_shared`), and for inference the kernel with the inhibition
        without its op's; None sends the call the full way."""
        push = self.push
        weight = push.weight
        if not exact_path.eager_shared(self, x, weight):
            return None
        if torch.is_grad_enabled() or not self.rectify or self.attention_type is not None:
            return self._shared(x)
        return eager_response(x, weight, push.bias, self.alpha, self.kernel_geometry)

    @torch.jit.unused
    def path(self, x: Tensor) -> str:
        """How a call with ``x`` is computed (:func:`.exact_path.layer_path`)."""
        return exact_path.layer_path(self, x)

    @torch.jit.unused
    def _shared(self, x: Tensor) -> Tensor:
        """The response with push and pull from one matrix product (:mod:`.push_and_pull`); with
        one pull and no attention the kernel also applies the inhibition (in training, saving the
        pre-activations for its backward pass)."""
        weight, bias = self.push.weight, self.push.bias
        if self.rectify and self.attention_type is None:
            needs_grad = torch.is_grad_enabled() and (
                x.requires_grad or any(p.requires_grad for p in self.parameters())
            )
            alpha = F.relu(self.alpha)
            if not needs_grad:
                return inference_response(x, weight, bias, alpha, *self.kernel_geometry)
            keep_pull = isinstance(self.alpha, nn.Parameter) and self.alpha.requires_grad
            return torch.ops.timm_pushpull.push_pull_train(
                x, weight, bias, alpha, *self.kernel_geometry, keep_pull
            )[0]
        push, pull = torch.ops.timm_pushpull.push_and_pull(x, weight, bias, *self.kernel_geometry)
        return self._respond(push, [pull])

    @torch.jit.unused
    def _fast_in_channels_last(self, x: Tensor) -> bool:
        """Whether the fast layer computes channels-last: its depthwise tent and dilated conv are
        much faster so on the CPU (BENCHMARKS.md, "Push-pull layer vs conv"), and the layer
        returns the input's layout. Not in FX graphs (a proxy has no size to test), nor for
        inputs one pixel wide: PyTorch 2.14's CPU convolution crashes on some channels-last."""
        return not isinstance(x, torch.fx.Proxy) and min(x.shape[-2:]) > 1

    def _branches(self, x: Tensor, path: str) -> tuple[Tensor, list[Tensor]]:
        """``(push, [pull per scale])``, each branch computed on its own by ``path``."""
        if not torch.jit.is_scripting():  # TorchScript computes in the input's layout
            if path == "fast" and self._fast_in_channels_last(x):
                x = x.contiguous(memory_format=torch.channels_last)
        weight, bias = self.push.weight, self.push.bias
        return self.push(x), [pull(x, weight, bias, path) for pull in self.pulls]

    def forward(self, x: Tensor) -> Tensor:
        _check_input_channels(x, self.in_channels)
        if torch.jit.is_scripting():  # the direct (or dilated) forms, plain convolutions
            push, pulls = self._branches(x, "fast" if self.pull_mode == "fast" else "direct")
            return self._respond(push, pulls)
        response = self._eager_shared(x)
        if response is not None:
            return response
        path = self.path(x)
        if path == "shared":
            return self._shared(x)
        push, pulls = self._branches(x, path)
        return _in_input_layout(self._respond(push, pulls), x)

    def _respond(self, push: Tensor, pulls: list[Tensor]) -> Tensor:
        """The response from the pre-activations of push and pulls."""
        # In place on the convolutions' fresh outputs: two (in eval three) activation-sized tensors
        # fewer to allocate and page in (BENCHMARKS.md, "Exact layer, branches apart (eval) vs
        # conv: ReLUs and inhibition in place or into new tensors"), and less memory. Autograd saves
        # the ReLUs' results, so with gradients the inhibition writes a new tensor.
        if self.rectify:
            push = F.relu_(push)
            pulls = [F.relu_(p) for p in pulls]
        if len(pulls) == 1:
            return self._inhibit(self.attention(push), pulls[0], not torch.is_grad_enabled())
        responses = [push] + [self._inhibit(push, p) for p in pulls]
        return self.fuse(self.attention(torch.cat(responses, dim=1)))


def create_pushpull(
    in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], **kwargs
) -> PushPull2d:
    """Factory in the style of timm's ``create_conv2d``: ``padding`` defaults to 'same'-like."""
    kernel = _pair(kernel_size)
    stride, dilation = _pair(kwargs.pop("stride", 1)), _pair(kwargs.get("dilation", 1))
    padding = kwargs.pop("padding", tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation)))
    return PushPull2d(in_channels, out_channels, kernel, stride, padding, **kwargs)


def pushpull_conv_layer(**kwargs) -> partial:
    """A conv constructor with ``nn.Conv2d``'s signature, for blocks that take ``conv_layer=``."""
    return partial(PushPull2d, **kwargs)
