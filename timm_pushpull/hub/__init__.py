"""Hugging Face Hub: model cards (:mod:`.card`) and publishing (:mod:`.publish`).

Loading stays inside timm: where pretrained weights come from is
:mod:`timm_pushpull.models._pretrained`, and :func:`create_model` (models from names, folders and
checkpoints) is :mod:`timm_pushpull.factory`; both are re-exported here, where they used to live.
"""

from ..constants import VERSION_KEY, WEIGHTS_DIR_ENV
from ..factory import create_model, load_checkpoint_model
from ..models._cfg import HUB_CONFIGS_DIR
from ..models._pretrained import local_weights_path, read_config, with_local_pretrained
from .card import (
    DATASETS,
    MODEL_CARD_TEMPLATE,
    DatasetInfo,
    HubConfig,
    RobustnessResults,
    check_card,
    evaluation_results,
    official_results,
    plot_robustness,
    render_card,
)
from .publish import publish, verify_folder

__all__ = [
    "DATASETS",
    "HUB_CONFIGS_DIR",
    "MODEL_CARD_TEMPLATE",
    "VERSION_KEY",
    "WEIGHTS_DIR_ENV",
    "DatasetInfo",
    "HubConfig",
    "RobustnessResults",
    "check_card",
    "create_model",
    "evaluation_results",
    "load_checkpoint_model",
    "local_weights_path",
    "official_results",
    "plot_robustness",
    "publish",
    "read_config",
    "render_card",
    "verify_folder",
    "with_local_pretrained",
]
