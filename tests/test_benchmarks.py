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


def test_pull_benchmark_prints_its_tables():
    from timm_pushpull.benchmark import bench_pull

    text = bench_pull(rounds=1, quick=True)
    assert "64->64 3x3, h=2" in text and "rule picks" in text
    assert text.count("\n| 64->64 3x3, h=2 |") == 2  # eval and train
