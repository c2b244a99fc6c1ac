"""timm-pushpull: push-pull inhibition and anti-aliased downsampling for timm.

Importing this package registers every model with timm, so ``timm.create_model("resnet50_pp_b1")``
works afterwards.
"""

from . import layers, models  # noqa: F401  (models registers the timm entrypoints)
from .factory import create_model
from .version import __version__

__all__ = ["__version__", "create_model", "layers", "models"]
