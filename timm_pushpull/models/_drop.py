"""timm's regularisation arguments ``drop_path_rate`` and ``drop_block_rate`` for our families.

Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016,
arXiv:1603.09382) drops a residual branch per sample, so only families with residual blocks (the
CIFAR ResNets and Wide ResNets) take ``drop_path_rate``; DropBlock (Ghiasi et al., NeurIPS 2018,
arXiv:1810.12890) goes where timm's ResNet puts it. The others accept 0 (timm's ``train.py`` passes
a rate only when one is set) and refuse any other value with the reason.
"""

__all__ = ["check_drop_rate", "refuse_drop_rates"]


def check_drop_rate(name: str, rate: float) -> float:
    """``rate`` as a float in [0, 1), or ``ValueError`` naming the argument."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {rate!r}")
    return float(rate)


def refuse_drop_rates(family: str, reason: str, **rates: float) -> None:
    """``ValueError`` for any rate above 0 in a family that cannot use it (``reason`` says why)."""
    for name, rate in rates.items():
        if check_drop_rate(name, rate):
            raise ValueError(f"{name}={rate!r} (allowed: 0): {family} {reason}")
