"""The benchmark scripts run end to end (smoke runs on tiny inputs; no timing is asserted)."""

import pytest

from timm_pushpull.robustness import bench
from timm_pushpull.robustness.corruptions import ALL_CORRUPTIONS


def test_corruption_benchmark_runs_every_reference():
    rows = bench.run(2, image_size=32, repeats=1, verbose=False)
    assert [row["name"] for row in rows] == list(ALL_CORRUPTIONS)
    assert all(row["torch_s"] > 0 and row["numpy_s"] > 0 for row in rows)
    table = bench.format_table(rows, num_images=2, size=32, scale="cifar", device="cpu")
    assert table.count("\n| ") == len(ALL_CORRUPTIONS) + 2  # header, one row each, total


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"names": ["fogg"]}, {"num_images": 0}])
def test_corruption_benchmark_rejects_bad_arguments(kwargs):
    arguments = {"num_images": 1, "repeats": 1, "verbose": False} | kwargs
    with pytest.raises(ValueError, match="repeats|fogg|num_images"):
        bench.run(**arguments)


def test_evaluation_benchmark_writes_the_official_layouts_and_a_table(tmp_path):
    from timm_pushpull.robustness import evaluate_bench
    from timm_pushpull.robustness.datasets import CifarCFolder, ImageNetCFolder, detect_dataset_kind

    cifar = evaluate_bench.write_cifar_c(tmp_path / "CIFAR-10-C", per_severity=3)
    imagenet = evaluate_bench.write_imagenet_c(tmp_path / "ImageNet-C", count=5, classes=2)
    assert (detect_dataset_kind(cifar), detect_dataset_kind(imagenet)) == ("cifar-c", "imagenet-c")
    assert CifarCFolder(cifar).arrays("fog", 5)[0].shape == (3, 32, 32, 3)
    folder = ImageNetCFolder(imagenet).dataset("fog", 1)
    assert len(folder) == 5 and folder[0][0].size == (224, 224)
    row = {"dataset": "CIFAR-10-C", "model": "m", "device": "cpu", "threads": 1, "images": 500,
           "load": (1.0, 1.5)}  # fmt: skip
    rows = [row | {"processes": 1, "seconds": 5.0, "images_per_s": 100.0, "full_run_hours": 2.6},
            row | {"processes": 2, "seconds": 2.5, "images_per_s": 200.0, "full_run_hours": 1.3}]  # fmt: skip
    table = evaluate_bench.format_table(rows)
    assert "| 2 x 1 | 500 | 2.5 | 200.0 | 2.00x | 1.3 | 1.0 / 1.5 |" in table


def test_pull_benchmark_prints_its_tables():
    from timm_pushpull.benchmark import bench_pull

    text = bench_pull(rounds=1, quick=True)
    assert "64->64 3x3, h=2" in text and "rule picks" in text
    assert text.count("\n| 64->64 3x3, h=2 |") == 2  # eval and train
