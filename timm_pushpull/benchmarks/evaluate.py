"""Throughput of ``evaluate`` on 1 and more processes: images per second on released-set layouts.

    timm-pushpull bench --section evaluate

Writes a CIFAR-10-C folder in the official layout (``fog.npy``: 5 severities x N uint8 images,
``labels.npy``) and an ImageNet-C-layout folder (``fog/1/<wnid>/*.JPEG``, 224 px) into a
temporary folder, then times :func:`~timm_pushpull.robustness.evaluate.evaluate_model` on each
under ``torchrun --standalone --nproc_per_node P`` for every P: on the CPU the cores are split
evenly between the processes (gloo), plus one process on one core; on GPUs each process takes
one (NCCL). Each launch runs a warm-up pass first and times the evaluation between two barriers,
so start-up is not counted and the slowest process sets the time. The full-run estimates scale that rate to all 19 corruptions x
5 severities of CIFAR-10-C (10,000 images each) and ImageNet-C (50,000 images each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["FULL_RUN_IMAGES", "format_table", "run", "write_cifar_c", "write_imagenet_c"]

# images of a full run: 19 corruptions x 5 severities x the test set
FULL_RUN_IMAGES = {"CIFAR-10-C": 19 * 5 * 10_000, "ImageNet-C": 19 * 5 * 50_000}
# data set -> (model, batch size, severities evaluated)
_CASES = {"CIFAR-10-C": ("resnet20_pp", 256, "1,2,3,4,5"), "ImageNet-C": ("resnet50_pp", 32, "1")}


def _smooth_images(generator: np.random.Generator, count: int, size: int) -> np.ndarray:
    """uint8 ``[count, size, size, 3]``: upsampled 8x8 noise, as smooth as photos (JPEGs of pixel
    noise would decode several times slower than real ones)."""
    small = generator.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
                     for image in small])  # fmt: skip


def write_cifar_c(root: Path, per_severity: int, seed: int = 0) -> Path:
    """A CIFAR-10-C folder with one corruption (``fog.npy``, ``[5 * per_severity, 32, 32, 3]``)."""
    generator = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(root / "fog.npy", mode="w+", dtype=np.uint8,
                                       shape=(5 * per_severity, 32, 32, 3))  # fmt: skip
    for start in range(0, len(images), 1000):
        stop = min(start + 1000, len(images))
        images[start:stop] = _smooth_images(generator, stop - start, 32)
    images.flush()
    np.save(root / "labels.npy", generator.integers(0, 10, 5 * per_severity))
    return root


def write_imagenet_c(root: Path, count: int, classes: int = 8, seed: int = 0) -> Path:
    """An ImageNet-C-layout folder: ``fog/1/<wnid>/*.JPEG``, ``count`` 224 px images."""
    generator = np.random.default_rng(seed)
    for number, image in enumerate(_smooth_images(generator, count, 224)):
        folder = root / "fog" / "1" / f"n{number % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"ILSVRC2012_val_{number:08d}.JPEG", quality=90)
    return root


def _worker(args: argparse.Namespace) -> None:
    """One process of a timed launch; the first prints the result as a JSON line."""
    import timm
    from accelerate import PartialState
    from timm.data import resolve_data_config

    import timm_pushpull  # noqa: F401  (registers the models)

    from ..robustness.datasets import open_datasets
    from ..robustness.evaluate import evaluate_model
    from ..robustness.parallel import release_process_group_at_exit

    state = PartialState(cpu=args.device == "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=10)
    config = resolve_data_config({}, model=model)
    corrupted = open_datasets([args.folder], config)["c"][0]
    kwargs = dict(suites=["c"], corrupted=corrupted, corruptions=["fog"], batch_size=args.batch_size,
                  severities=[int(s) for s in args.severities.split(",")], mean=config["mean"],
                  std=config["std"], accelerator=state, workers=args.workers, progress=False)  # fmt: skip
    evaluate_model(model, max_images=args.batch_size * state.num_processes, **kwargs)  # warm-up
    state.wait_for_everyone()
    start = time.perf_counter()
    evaluate_model(model, **kwargs)
    state.wait_for_everyone()
    seconds = time.perf_counter() - start
    release_process_group_at_exit()
    if state.is_main_process:
        images = sum(len(corrupted.dataset("fog", s)) for s in kwargs["severities"])
        print(json.dumps({"images": images, "seconds": seconds}), flush=True)


def _launch(folder: Path, dataset: str, processes: int, device: str, threads: int, workers: int):
    model, batch_size, severities = _CASES[dataset]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(processes), "-m", "timm_pushpull.benchmarks.evaluate", "--worker", "--folder", str(folder), "--model", model,
               "--batch-size", str(batch_size), "--severities", severities, "--device", device,
               "--threads", str(threads), "--workers", str(workers)]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": str(max(threads, 1))}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return model, json.loads(done.stdout.strip().splitlines()[-1])


def run(
    processes: tuple[int, ...] = (1, 2),
    cifar_per_severity: int = 1000,
    imagenet_images: int = 32,
    device: str = "cpu",
    workers: int = 0,
) -> list[dict]:
    """One row per (data set, number of processes): images/s, with the load average around it."""
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folders = {
            "CIFAR-10-C": write_cifar_c(Path(scratch) / "CIFAR-10-C", cifar_per_severity),
            "ImageNet-C": write_imagenet_c(Path(scratch) / "ImageNet-C", imagenet_images),
        }
        # CPU: the cores split between the processes, and one process on one core as well (on a
        # busy machine one thread can beat two, which would flatter the processes)
        launches = [
            (count, max(1, cores // count) if device == "cpu" else 0) for count in processes
        ]
        if device == "cpu" and 1 in processes and cores > 1:
            launches.insert(processes.index(1) + 1, (1, 1))
        for dataset, folder in folders.items():
            for count, threads in launches:
                load_before = os.getloadavg()[0]
                model, timed = _launch(folder, dataset, count, device, threads, workers)
                rate = timed["images"] / timed["seconds"]
                rows.append({"dataset": dataset, "model": model, "device": device,
                             "processes": count, "threads": threads, "images": timed["images"],
                             "seconds": timed["seconds"], "images_per_s": rate,
                             "full_run_hours": FULL_RUN_IMAGES[dataset] / rate / 3600,
                             "load": (load_before, os.getloadavg()[0])})  # fmt: skip
    return rows


def format_table(rows: list[dict]) -> str:
    header = ["data set (layout)", "model", "device", "processes x threads", "images", "s",
              "images/s", "vs best 1-process row", "full run (19 x 5 x N), h", "load avg before/after"]  # fmt: skip
    lines = ["### Evaluation throughput (`evaluate`, -C suite, torchrun)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    single: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["processes"] == 1:
            key = (r["dataset"], r["device"])
            single[key] = max(single.get(key, 0.0), r["images_per_s"])
    for r in rows:
        base = single.get((r["dataset"], r["device"]))
        versus = f"{r['images_per_s'] / base:.2f}x" if base else "-"
        lines.append("| " + " | ".join([
            r["dataset"], r["model"], r["device"], f"{r['processes']} x {r['threads'] or '-'}",
            str(r["images"]), f"{r['seconds']:.1f}", f"{r['images_per_s']:.1f}", versus,
            f"{r['full_run_hours']:.1f}", f"{r['load'][0]:.1f} / {r['load'][1]:.1f}",
        ]) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="comma list of process counts")
    parser.add_argument("--cifar-per-severity", type=int, default=1000)
    parser.add_argument("--imagenet-images", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    # one timed launch (what run() starts under torchrun)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--folder", "--model", "--severities"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    processes = tuple(int(p) for p in args.processes.split(","))
    print(format_table(run(processes, args.cifar_per_severity, args.imagenet_images, args.device,
                           args.workers)))  # fmt: skip


if __name__ == "__main__":
    main()
