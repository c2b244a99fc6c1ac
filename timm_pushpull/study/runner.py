"""Running the study: the unfinished cells of a grid, each trained and evaluated in a
single-threaded process, in a locked folder, resumable after SIGINT / SIGTERM."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..constants import WEIGHTS_FILE
from ..errors import InvalidArgumentError
from ..experiments import (
    STUDY_FULL,
    STUDY_QUICK,
    STUDY_SCALES,
    ExperimentSettings,
    build_corrupted_set,
    ensure_fashion_mnist,
    load_trained_model,
    seeded_test_images,
    training_overrides,
)
from ..locking import exclusive_folder
from .folder import DONE_FILES, cell_finished, corrupted_folder, open_study
from .grid import EVAL_SEED, GROUPS, Cell, grid, group_noise_levels, group_settings


def run_study(
    out: str | Path,
    quick: bool = False,
    only: Sequence[str] | None = None,
    workers: int = 2,
    data_dir: str | Path | None = None,
    scale: str | None = None,
) -> list[Cell]:
    """Run the unfinished cells (of the ``only`` groups) with ``workers`` single-threaded processes,
    printing progress and an ETA; returns the cells run. Holds ``out``'s lock throughout (a second
    study there is refused); SIGINT or SIGTERM stops it, every training cell at a checkpoint, and
    the same command resumes it."""
    unknown = sorted(set(only or ()) - set(GROUPS))
    if unknown:
        raise InvalidArgumentError(f"--only: unknown group(s) {unknown}; groups are {list(GROUPS)}")
    if workers < 1:
        raise InvalidArgumentError(f"--workers must be >= 1, got {workers}")
    scale = scale or (STUDY_QUICK.name if quick else STUDY_FULL.name)
    if scale not in STUDY_SCALES:
        raise InvalidArgumentError(f"--scale must be one of {list(STUDY_SCALES)}, got {scale!r}")
    out, settings = Path(out), STUDY_SCALES[scale]
    cells = grid(settings is STUDY_QUICK)
    data = ensure_fashion_mnist(data_dir)
    with exclusive_folder(out, "--out"), _sigterm_interrupts():
        open_study(out, cells, settings)
        return _run_cells(out, cells, settings, data, only, workers)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the study as Ctrl-C does (a KeyboardInterrupt): the pool's workers are then
    stopped too, each saving its training checkpoint, instead of living on as orphans that would
    write into the folder beside the restarted study."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_cells(out: Path, cells: Sequence[Cell], settings: ExperimentSettings, data: Path,
               only: Sequence[str] | None, workers: int) -> list[Cell]:  # fmt: skip
    from ..robustness.corruptions import ALL_CORRUPTIONS

    todo = cells_to_run(out, cells, only)
    # one corrupted set per test subset, shared by every group with the c suite tested on it
    for count in sorted({group_settings(GROUPS[c.group], settings).test_samples
                         for c in todo if "c" in GROUPS[c.group].suites}):  # fmt: skip
        images, labels = seeded_test_images(data, count)
        build_corrupted_set(images, labels, corrupted_folder(out, count),
                            settings.corruptions or ALL_CORRUPTIONS, settings.severities)  # fmt: skip
    selected = [c for c in cells if not only or c.group in only]
    print(f"study: {len(selected) - len(todo)} of {len(selected)} cells finished, "
          f"{len(todo)} to run on {workers} worker(s)", flush=True)  # fmt: skip
    tasks = [(cell, out, settings, data) for cell in todo]
    start, done = time.perf_counter(), 0
    if workers == 1:
        results = map(_run_cell_task, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_run_cell_task, tasks)
    finished = False
    try:
        for cell, seconds in results:
            done += 1
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (len(todo) - done)
            print(f"[{done}/{len(todo)}] {cell.folder} done in {seconds:.0f} s; "
                  f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}", flush=True)  # fmt: skip
        finished = True
    finally:
        if pool is not None:
            if finished:
                pool.close()
            else:
                pool.terminate()  # interrupted or failed: stop the other cells too
            pool.join()
    return todo


def cells_to_run(out: Path, cells: Sequence[Cell], only: Sequence[str] | None = None) -> list[Cell]:
    """The unfinished cells (of the ``only`` groups), lowest training seeds first across groups,
    so that a study stopped early has every cell at fewer seeds rather than some groups at all
    seeds and others at none."""
    todo = [c for c in cells if (not only or c.group in only) and not cell_finished(out / c.folder)]
    return sorted(todo, key=lambda c: c.seed)  # stable: grid order within a seed


def _run_cell_task(task: tuple[Cell, Path, ExperimentSettings, Path]) -> tuple[Cell, float]:
    return task[0], run_cell(*task)


def run_cell(cell: Cell, out: Path, settings: ExperimentSettings, data_dir: Path) -> float:
    """Train and evaluate one cell single-threaded; returns its wall time in seconds.

    The evaluation writes into ``<cell>/evaluation`` and its files move to the cell folder only
    when it has finished, so a results.json in the cell folder always means a finished cell.
    """
    import torch

    from ..robustness.datasets import CifarCFolder
    from ..robustness.evaluate import EvalSettings, evaluate_model
    from ..training.checkpoint import RESUME_FILE
    from ..training.config import build_config
    from ..training.trainer import train

    tic = time.perf_counter()
    torch.set_num_threads(1)
    group = GROUPS[cell.group]
    settings = group_settings(group, settings)
    folder = out / cell.folder
    run_dir = folder / "training"
    if not (run_dir / WEIGHTS_FILE).is_file():
        resume = (run_dir / RESUME_FILE).is_file()
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
        recipe, overrides = training_overrides(cell.model, cell.family, settings, data_dir,
                                               run_dir, resume, False, cell.seed, cell.kwargs)  # fmt: skip
        trained = train(build_config(recipe, {**overrides, **group.train}), recipe=recipe)
        if trained["stopped_early"]:  # SIGINT / SIGTERM: the trainer saved a checkpoint
            raise KeyboardInterrupt(
                f"{cell.folder}: training stopped at step {trained['global_step']}"
            )
        shutil.rmtree(folder / "evaluation", ignore_errors=True)  # of weights no longer there
    images, labels = seeded_test_images(data_dir, settings.test_samples)
    evaluation = folder / "evaluation"
    evaluation_settings = EvalSettings(
        suites=group.suites,
        corruptions=settings.corruptions or None,
        severities=settings.severities,
        scale="cifar",
        seed=EVAL_SEED,
        noise_levels=group_noise_levels(group, settings),
    )
    evaluate_model(
        load_trained_model(run_dir),
        images,
        labels,
        evaluation_settings,
        corrupted=(
            CifarCFolder(corrupted_folder(out, settings.test_samples))
            if "c" in group.suites
            else None
        ),
        out_dir=evaluation,
        model_name=cell.model,
        model_args=cell.kwargs,
        dataset_names=dict(
            clean="fashion_mnist test", c="fashion-mnist-c (generated, CIFAR scale)"
        ),
        device="cpu",
        batch_size=settings.eval_batch_size,
        progress=False,
    )
    for name in DONE_FILES[::-1]:  # results.json last: it marks the cell finished
        os.replace(evaluation / name, folder / name)
    shutil.rmtree(evaluation)
    return time.perf_counter() - tic


def _duration(seconds: float) -> str:
    """Hours past 90 minutes, minutes below."""
    return f"{seconds / 3600:.1f} h" if seconds > 5400 else f"{seconds / 60:.1f} min"
