"""Training on the papers' recipes with Accelerate (:func:`timm_pushpull.training.trainer.train`,
``timm-pushpull train``), timm's own train script route (``timm-pushpull timm-train``) and the
training throughput benchmark (:mod:`timm_pushpull.benchmarks.training`).

The trainer module is not imported here: it pulls in Accelerate, which the command line only
needs once a run starts.
"""

from .config import TrainConfig, available_recipes, build_config

__all__ = ["TrainConfig", "available_recipes", "build_config"]
