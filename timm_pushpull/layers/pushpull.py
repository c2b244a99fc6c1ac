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

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SEModule, register_notrace_function
from torch import Tensor
from torch.nn.modules.utils import _pair

from .attention import SimAM
from .portable import portable_graph
from .pull import PULL_MODES, Pull
from .push_and_pull import inference_response, runs_shared_taps, shared_taps_apply, shared_taps_pay

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
    """``out`` in NCHW if ``x`` is, in inference, as nn.Conv2d's output, though the C forms work
    channels-last: a channels-last response made the rest of an NCHW model channels-last, and each
    later convolution then converted its weights on every call (22 copies, 8% of a
    resnet50_pp_b1 forward pass, against one copy of the stem's response). In training the copy
    and its backward cost more than they save (BENCHMARKS.md, exact pull run 10)."""
    if torch.is_grad_enabled():
        return out
    if torch.jit.is_scripting():
        pass  # TorchScript runs the direct forms, whose output is in the input's layout
    elif _vmapped(x):
        return out  # vmap cannot query the channels-last layout
    if x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous()
    return out


@torch.jit.unused
def _vmapped(x: Tensor) -> bool:
    return torch._C._functorch.is_batchedtensor(x)


torch.fx.wrap("_in_input_layout")


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


def _shared_args(layer: PushPull2d) -> tuple:
    """The geometry arguments of :mod:`.push_and_pull`'s ops for a layer."""
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
        pull_scale: ``h``, the factor by which the pull kernel is larger than the push kernel
            (pull size ``floor(s*h)``, +1 when even; ``h = 1`` keeps the size). A sequence of more
            than one value gives the multi-scale variant: ``V_i = push - alpha * pull_i``, concat
            ``[push, V_1..V_S]``, channel attention, 1x1 conv back to ``out_channels``.
        alpha: inhibition strength when fixed (>= 0; default 1.0, as in the papers), or the centre
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
        if not scales or any(not isinstance(h, (int, float)) or h <= 0 for h in scales):
            raise ValueError(
                f"pull_scale (h) must be a float > 0 or a sequence of them, got {pull_scale!r}"
            )
        if alpha is None:
            alpha = LEARNED_ALPHA_CENTRE if learn_alpha else FIXED_ALPHA
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
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
        # Stride-1 layers compute push and pull from one matrix product where that pays
        # (:mod:`.push_and_pull`); the C kernel decides per call whether it runs.
        self.shares_taps = (
            pull_mode == "exact"
            and shared_taps_apply(stride, dilation, groups, len(scales))
            and shared_taps_pay(in_channels, out_channels, kernel_size, self.pulls[0].pull_size)
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

    @torch.jit.unused
    def _runs_shared_taps(self, x: Tensor) -> bool:
        if not self.shares_taps or portable_graph() or isinstance(x, torch.fx.Proxy):
            return False  # traces, ONNX and FX graphs record the two branches' ops
        # a CPU kernel: other devices (meta included, which autocast does not know) go apart
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            return False
        if torch._C._functorch.is_batchedtensor(x) or torch.is_autocast_enabled("cpu"):
            return False
        if torch.compiler.is_compiling():
            return True  # the op itself picks the C kernel or the two branches when it runs
        return runs_shared_taps(x, self.push.weight)

    @torch.jit.unused
    def _fuses_response(self, x: Tensor) -> bool:
        """Whether the shared form can also apply the inhibition: inference, one pull, no attention."""
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        return self.rectify and self.attention_type is None and not needs_grad

    @torch.jit.unused
    def _shared_response(self, x: Tensor) -> Tensor:
        """``relu(push) - alpha * relu(pull)`` from one matrix product."""
        weight, bias, alpha = self.push.weight, self.push.bias, F.relu(self.alpha)
        return inference_response(x, weight, bias, alpha, *_shared_args(self))

    @torch.jit.unused
    def _shared_branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(push, pull)`` from one matrix product."""
        x = x.contiguous(memory_format=torch.channels_last)
        weight, bias = self.push.weight, self.push.bias
        return torch.ops.timm_pushpull.push_and_pull(x, weight, bias, *_shared_args(self))

    def _separate_branches(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(push, [pull per scale])``, each branch computed on its own."""
        if self.pull_mode == "fast" or self.pulls[0].runs_native(x):
            # The depthwise tent and the dilated conv are much faster channels-last on CPU: the
            # fast layer costs 2.3x a plain conv this way against 3.1x in NCHW (BENCHMARKS.md).
            # The exact pull's C form returns channels-last: the rest follows (4.0x -> 3.0x).
            x = x.contiguous(memory_format=torch.channels_last)
        weight, bias = self.push.weight, self.push.bias
        return self.push(x), [pull(x, weight, bias) for pull in self.pulls]

    def forward(self, x: Tensor) -> Tensor:
        _check_input_channels(x, self.in_channels)
        if torch.jit.is_scripting():
            push, pulls = self._separate_branches(x)
        elif self._runs_shared_taps(x):
            if self._fuses_response(x):
                return self._shared_response(x)  # in the input's layout
            push, pull = self._shared_branches(x)
            pulls = [pull]
        else:
            push, pulls = self._separate_branches(x)
        return _in_input_layout(self._respond(push, pulls), x)

    def _respond(self, push: Tensor, pulls: list[Tensor]) -> Tensor:
        """The response from the pre-activations of push and pulls."""
        # In place on the convolutions' fresh outputs: two (in eval three) activation-sized tensors
        # fewer to allocate and page in. Side by side in the benchmark that is 0-5% of the exact
        # layer's time (BENCHMARKS.md, exact pull runs 8 and 9), and less memory. Autograd saves
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
