"""Publishing (``timm-pushpull publish``): write a Hub model folder, check it, upload it.

The folder holds what timm itself reads, via :func:`timm.models.save_for_hf`
(``model.safetensors`` + ``config.json``), a model card (:mod:`.card`) with a robustness plot and,
for weights under another license, that ``LICENSE``. It is loaded back through timm before it is
kept or uploaded (``HfApi.upload_folder``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from huggingface_hub import HfApi, is_offline_mode
from timm.models import save_for_hf, split_model_name_tag

from ..constants import (
    CARD_FILE,
    LICENSE_FILE,
    MODEL_CONFIG_FILE,
    OFFICIAL_DIR_ENV,
    PLOT_FILE,
    RESULTS_FILE,
    VERSION_KEY,
    WEIGHTS_FILE,
)
from ..errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingFileError,
    OfflineError,
    OutputExistsError,
    hub_unreachable,
    is_network_failure,
)
from ..factory import compare_keys, create_model, load_checkpoint_model
from ..models._cfg import HUB_CONFIGS_DIR
from ..version import __version__
from .card import (
    DATASETS,
    MODEL_CARD_TEMPLATE,
    HubConfig,
    RobustnessResults,
    check_card,
    evaluation_results,
    official_results,
    paper_ids,
    plot_robustness,
    render_card,
    training_dataset,
    training_facts,
)

__all__ = ["add_arguments", "main", "publish", "verify_folder"]


def verify_folder(folder: Path, model: nn.Module) -> None:
    """Load ``folder`` back through timm (``local-dir:``) and require the same tensors and logits."""
    loaded = create_model(f"local-dir:{folder}", pretrained=True).eval()
    expected, found = model.state_dict(), loaded.state_dict()
    missing, unexpected = compare_keys(expected, found)
    differing = [k for k in expected if k in found and not torch.equal(expected[k], found[k])]
    if missing or unexpected or differing:
        raise CheckpointError(
            f"{folder} does not load back into {loaded.pretrained_cfg['architecture']}: missing "
            f"{missing}, unexpected {unexpected}, different values {differing}"
        )
    inputs = torch.rand(
        (2, *loaded.pretrained_cfg["input_size"]), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        if not torch.equal(model.eval()(inputs), loaded(inputs)):
            raise CheckpointError(f"{folder} loads back but gives different logits")


def _collect_results(
    source: Path,
    architecture: str,
    hub_config: HubConfig,
    results_path: Path | None,
    official_dir: Path | None,
) -> RobustnessResults:
    spec = hub_config.results
    if results_path is not None:
        results = evaluation_results(results_path)
    elif spec.get("official"):
        if official_dir is None and os.environ.get(OFFICIAL_DIR_ENV):
            official_dir = Path(os.environ[OFFICIAL_DIR_ENV]).expanduser()
        if official_dir is None:
            raise MissingFileError(
                f"the hub config {hub_config.path} takes the authors' released results "
                f"({spec['official']}): pass --official-dir (or set {OFFICIAL_DIR_ENV}), the "
                "folder of their release (the one holding results/)"
            )
        flip_baseline = spec.get("flip_baseline")
        results = official_results(
            architecture,
            official_dir / "results" / spec["official"],
            official_dir / "results" / flip_baseline if flip_baseline else None,
        )
    elif source.is_dir() and (source / RESULTS_FILE).is_file():
        results = evaluation_results(source / RESULTS_FILE)
    else:
        results = RobustnessResults()
    results.source_name = spec.get("attribution", results.source_name)
    results.source_url = spec.get("source_url", results.source_url)
    if results.clean_error is None or not results.has_robustness():
        raise InvalidArgumentError(
            f"refusing to publish {source} without results: a card needs the clean error and "
            "robustness results. Pass --results results.json (from `timm-pushpull evaluate`), put "
            "results.json in the run directory, or name them under 'results' in the hub config."
        )
    return results


def _check_repo_id(repo_id: str | None) -> str:
    if not repo_id or not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id) or ".." in repo_id:
        raise InvalidArgumentError(
            f"--repo-id must look like ORG/NAME (letters, digits, - _ .), got {repo_id!r}"
        )
    return repo_id


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite and not (target.is_dir() and not any(target.iterdir())):
        raise OutputExistsError(
            f"--dry-run {target} already exists; pass --overwrite to replace it"
        )


def _write_folder(
    folder: Path,
    model: nn.Module,
    source: Path,
    repo_id: str,
    hub_config: HubConfig,
    results: RobustnessResults,
    training: Mapping[str, Any],
    card_template: Path,
) -> None:
    """model.safetensors + config.json (timm's save_for_hf), LICENSE, plot and README.md."""
    cfg = model.pretrained_cfg
    tag = split_model_name_tag(hub_config.model)[1] if hub_config.model else ""
    dataset = DATASETS[hub_config.dataset]
    tag = tag or cfg.get("tag")
    pretrained_cfg = {
        "tag": tag,
        "license": hub_config.license or cfg.get("license"),
        "paper_ids": paper_ids(model, tag),
        "description": (hub_config.summary or "").strip() or cfg.get("description"),
    }
    model_config: dict[str, Any] = {
        "pretrained_cfg": {k: v for k, v in pretrained_cfg.items() if v},
        VERSION_KEY: __version__,
    }
    label_names = cfg.get("label_names") or dataset.label_names
    if label_names and len(label_names) == model.num_classes:
        model_config["label_names"] = list(label_names)
    save_for_hf(model, folder, model_config=model_config, safe_serialization=True)
    if source.is_dir() and (source / LICENSE_FILE).is_file():
        shutil.copyfile(source / LICENSE_FILE, folder / LICENSE_FILE)
    elif pretrained_cfg["license"] == "mit":
        raise CheckpointError(
            f"MIT-licensed weights travel with their LICENSE, and {source} has none"
        )
    title = hub_config.title or repo_id.split("/")[-1]
    plot = PLOT_FILE if plot_robustness(results, folder / PLOT_FILE, title) else None
    card = render_card(model, repo_id, hub_config, results, training, plot, card_template)
    card.save(folder / CARD_FILE)


def publish(
    source: str | Path,
    repo_id: str | None = None,
    *,
    hub_config: str | Path | HubConfig | None = None,
    results: str | Path | None = None,
    dry_run: str | Path | None = None,
    private: bool = False,
    overwrite: bool = False,
    model: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    official_dir: str | Path | None = None,
    card_template: str | Path = MODEL_CARD_TEMPLATE,
    token: str | None = None,
) -> str:
    """Write a Hub model folder for ``source`` and upload it (or, with ``dry_run``, keep it there).

    ``source``: a model folder (training run, converted official model) or a weights file, or a
    folder an earlier ``dry_run`` wrote (uploaded as it is). Refuses weights that do not load back
    strictly into the declared architecture, a card without results, an existing ``dry_run``
    folder or an existing repository README unless ``overwrite``. Returns the folder path
    (``dry_run``) or the URL of the upload commit.
    """
    source = Path(source)
    if hub_config is None and repo_id:
        default = HUB_CONFIGS_DIR / f"{repo_id.split('/')[-1]}.yaml"
        if default.is_file() and HubConfig.load(default).repo_id == repo_id:
            hub_config = default
    if not isinstance(hub_config, HubConfig):
        hub_config = HubConfig.load(hub_config) if hub_config else HubConfig()
    if repo_id and hub_config.repo_id and repo_id != hub_config.repo_id:
        raise InvalidArgumentError(
            f"--repo-id {repo_id} differs from {hub_config.path}'s {hub_config.repo_id}"
        )
    repo_id = _check_repo_id(repo_id or hub_config.repo_id)
    prepared = source.is_dir() and (source / CARD_FILE).is_file()
    if prepared and dry_run is not None:
        raise InvalidArgumentError(
            f"{source} is already a written Hub folder: upload it without --dry-run"
        )

    if dry_run is not None:
        target = Path(dry_run)
        _check_target(target, overwrite)
    else:
        if is_offline_mode():
            raise OfflineError(
                "cannot upload: the Hugging Face Hub is offline (HF_HUB_OFFLINE=1). Write the "
                "folder with --dry-run DIR, then upload it when online with "
                f"`timm-pushpull publish DIR --repo-id {repo_id}`."
            )
        api = HfApi(token=token, library_name="timm", library_version=timm.__version__)
        with _reaching_hub(repo_id):
            card_exists = api.file_exists(repo_id, CARD_FILE)
        if card_exists and not overwrite:
            raise OutputExistsError(
                f"{repo_id} already has a README.md; pass --overwrite to replace its card"
            )

    if prepared:
        net = load_checkpoint_model(source, hub_config.model)
        verify_folder(source, net)
        if f"hf-hub:{repo_id}" not in check_card(source / CARD_FILE).text:
            raise InvalidArgumentError(
                f"the card in {source} was written for another repository: write the folder "
                f"again with --repo-id {repo_id} --dry-run DIR"
            )
        return _upload(api, source, repo_id, private)

    net = load_checkpoint_model(
        source, hub_config.model or model, model_args or hub_config.model_args
    )
    hub_config = replace(hub_config, dataset=training_dataset(source, hub_config))
    architecture = net.pretrained_cfg["architecture"]
    robustness = _collect_results(
        source,
        architecture,
        hub_config,
        None if results is None else Path(results),
        None if official_dir is None else Path(official_dir),
    )
    training = training_facts(source, hub_config)
    parent = target.parent if dry_run is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=parent))
    try:
        _write_folder(
            staging, net, source, repo_id, hub_config, robustness, training, Path(card_template)
        )
        verify_folder(staging, net)
        check_card(staging / CARD_FILE)
        if dry_run is None:
            return _upload(api, staging, repo_id, private)
        if overwrite and target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        try:  # never over a folder another publish wrote meanwhile: rename takes only an empty one
            staging.rename(target)
        except OSError:
            raise OutputExistsError(
                f"--dry-run {target} was written by another process meanwhile; pass --overwrite "
                "to replace it"
            ) from None
        return str(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _upload(api: HfApi, folder: Path, repo_id: str, private: bool) -> str:
    with _reaching_hub(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            allow_patterns=[WEIGHTS_FILE, MODEL_CONFIG_FILE, CARD_FILE, PLOT_FILE, LICENSE_FILE],
            commit_message=f"Publish {repo_id} with timm-pushpull {__version__}",
        )
    return str(commit)


@contextmanager
def _reaching_hub(repo_id: str) -> Iterator[None]:
    """A failed connection inside becomes one line naming the repository and HF_HUB_OFFLINE."""
    try:
        yield
    except Exception as error:
        if not is_network_failure(error):
            raise
        raise hub_unreachable(
            repo_id,
            "cannot upload",
            "write the folder with --dry-run DIR now and upload it when online with "
            f"`timm-pushpull publish DIR --repo-id {repo_id}`",
            cache_helps=False,
        ) from error


# ---------------------------------------------------------------------------------------------
# Command line: timm-pushpull publish
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        type=Path,
        help="a run directory or model folder (config.json + model.safetensors), a weights file "
        "(.safetensors, .pth), or a folder an earlier --dry-run wrote (uploaded as is)",
    )
    parser.add_argument("--repo-id", help="ORG/NAME on the Hub (default: the hub config's repo_id)")
    parser.add_argument(
        "--hub-config",
        type=Path,
        help="repo id, card fields, results (default: hub_configs/NAME.yaml for --repo-id ORG/NAME)",
    )
    parser.add_argument("--results", type=Path, help="results.json of `timm-pushpull evaluate`")
    parser.add_argument(
        "--dry-run", type=Path, metavar="DIR", help="write the folder to DIR instead of uploading"
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repository private")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --dry-run DIR or the repo's README",
    )
    parser.add_argument("--model", help="architecture[.tag] of a weights file")
    parser.add_argument(
        "--model-args", type=json.loads, default=None, help="JSON model kwargs of a weights file"
    )
    parser.add_argument(
        "--official-dir",
        type=Path,
        help="the folder of the authors' release, holding results/ (for a hub config whose "
        f"'results' name 'official' ones; default: ${OFFICIAL_DIR_ENV})",
    )
    parser.add_argument(
        "--card-template", type=Path, default=MODEL_CARD_TEMPLATE, help="model card template"
    )


def main(args: argparse.Namespace) -> int:
    where = publish(
        args.source,
        args.repo_id,
        hub_config=args.hub_config,
        results=args.results,
        dry_run=args.dry_run,
        private=args.private,
        overwrite=args.overwrite,
        model=args.model,
        model_args=args.model_args,
        official_dir=args.official_dir,
        card_template=args.card_template,
    )
    print(f"{'wrote' if args.dry_run else 'uploaded'} {where}")
    return 0
