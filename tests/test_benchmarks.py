"""The benchmark scripts run end to end (smoke runs on tiny inputs; no timing is asserted)."""

import platform
import subprocess
import sys

import pytest

from timm_pushpull.benchmarks import corruption_references
from timm_pushpull.benchmarks import corruptions as bench
from timm_pushpull.robustness.corruptions import ALL_CORRUPTIONS


def test_corruption_benchmark_runs_every_reference():
    rows = bench.run(2, image_size=32, repeats=1, verbose=False)
    assert [row["name"] for row in rows] == list(ALL_CORRUPTIONS)
    assert all(row["torch_s"] > 0 and row["numpy_s"] > 0 for row in rows)
    table = bench.format_table(rows, num_images=2, size=32, scale="cifar", device="cpu")
    assert table.count("\n| ") == len(ALL_CORRUPTIONS) + 2  # header, one row each, total


def test_corruption_benchmark_names_the_file_to_edit_for_a_corruption_without_reference(
    monkeypatch,
):
    # a corruption added to the package but not to the references fails before any timing
    monkeypatch.delattr(corruption_references, "fog")
    with pytest.raises(NotImplementedError, match=r"'fog' has no NumPy reference.*def fog\("):
        bench.run(1, names=["contrast", "fog"], repeats=1, verbose=False)
    # the references' helpers are no corruptions
    with pytest.raises(
        ValueError, match="unknown corruption '_disk'; expected one of: gaussian_noise"
    ):
        bench.reference("_disk")


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"names": ["fogg"]}, {"num_images": 0}])
def test_corruption_benchmark_rejects_bad_arguments(kwargs):
    arguments = {"num_images": 1, "repeats": 1, "verbose": False} | kwargs
    with pytest.raises(ValueError, match="repeats|fogg|num_images"):
        bench.run(**arguments)


def test_evaluation_benchmark_writes_the_official_layouts_and_a_table(tmp_path):
    from timm_pushpull.benchmarks import evaluate as evaluate_bench
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
    from timm_pushpull.benchmarks.layers import bench_pull
    from timm_pushpull.layers import exact_pull, push_and_pull

    default, gemm_pixels = exact_pull.FORWARD_CHUNK_BYTES_PER_THREAD, push_and_pull.GEMM_PIXELS
    text = bench_pull(rounds=1, quick=True)
    layer_table, *_ = text.split("### Pull alone")
    assert "64->64 3x3, h=2" in text and "rule picks" in text
    assert layer_table.count("\n| 64->64 3x3, h=2 |") == 2  # eval and train
    # the chunk sizes, with one thread and with all, and the default chunk size restored
    assert "by forward chunk size per thread (default " in text
    assert "| 64 MiB |" in text and exact_pull.FORWARD_CHUNK_BYTES_PER_THREAD == default
    assert "ReLUs and inhibition in place or into new tensors" in text
    # the shared form against the branches apart, and its GEMM size restored
    assert "push and pull from one GEMM (shared) or apart" in text
    assert f"by input pixels per GEMM call (default {push_and_pull.GEMM_PIXELS})" in text
    training = text.split("### Exact layer in training: the response from one op")[1]
    assert "| 16->16 3x3, h=2 | [2, 16, 32, 32] |" in training.split("###")[0]
    assert push_and_pull.GEMM_PIXELS == gemm_pixels
    assert "Memory of one exact layer call" in text


def test_gemm_benchmark_prints_its_tables():
    import torch

    from timm_pushpull.benchmarks.layers import bench_gemm
    from timm_pushpull.layers import exact_pull

    if exact_pull.blas_gemm(torch.float32) is None:
        pytest.skip("PyTorch without MKL: no GEMM to compare with")
    threads = torch.get_num_threads()
    text = bench_gemm(quick=True)
    assert "| 64->64 3x3 shared, NCHW input, 9 rows of 56 | 576 x 504 x 64 |" in text
    layers = text.split("### Exact layer vs conv with the kernels' own GEMM")[1].split("###")[0]
    assert layers.count("\n| 64->64 3x3, h=2 | [2, 64, 56, 56] |") == 2  # eval and train
    for model in ("resnet20_pp_b1", "resnet50_pp_b1"):
        assert f"| {model} | eval |" in text and f"| {model} | train |" in text
    # the thread count and the GEMM the kernels use restored
    assert torch.get_num_threads() == threads
    assert exact_pull.kernel_gemm(torch.float32) != exact_pull.blas_gemm(torch.float32)


def test_gpu_benchmarks_run_on_the_cpu_for_a_smoke_run():
    import torch

    from timm_pushpull.benchmarks.layers import bench_gpu
    from timm_pushpull.benchmarks.models import bench_gpu_models

    cpu = torch.device("cpu")
    assert "| 64->64 3x3, h=2 |" in bench_gpu(quick=True, device=cpu)
    assert "| resnet50_pp_b1 | 2x224 | train step |" in bench_gpu_models(quick=True, device=cpu)


def test_layer_runs_report_each_run_and_the_median():
    from timm_pushpull.benchmarks.layers import bench_layer_runs

    text = bench_layer_runs(runs=2, rounds=1, quick=True)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]  # after the header
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2", "| median (range)"]
    assert (
        "Exact 64->64 3x3, h=2 vs conv on [2, 64, 56, 56]: 2 runs of 1 interleaved rounds" in text
    )


def test_pair_runs_report_each_run_and_the_median():
    from timm_pushpull.benchmarks.models import bench_pair_runs

    text = bench_pair_runs(("resnet20",), runs=2, rounds=1)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]  # after the header
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2", "| median (range)"]
    assert "resnet20_pp_b1 eval" in text and "resnet20_pp_b1 train" in text


def test_lane_benchmark_reports_the_tiny_call_and_the_model_runs():
    from timm_pushpull.benchmarks.models import bench_eager_lane
    from timm_pushpull.layers import exact_path

    text = bench_eager_lane(quick=True)
    assert "| 16->16 3x3, h=2 |" in text
    for mode in ("eval", "train"):
        assert f"in {mode} (8x3x32x32): the lane or the full way, 1 runs of 2 interleaved" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[-2:]] == ["| 1", "| median (range)"]
    assert exact_path._lane  # switched back on


def test_interleaved_rounds_start_with_each_function_in_turn():
    # the function timed after another ran at another speed: each takes every place in turn
    from timm_pushpull.benchmarks.timing import interleaved_medians

    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved_medians(fns, rounds=6, warmup=0)
    assert set(times) == {"a", "b", "c"}
    firsts = [calls[i] for i in range(0, 18, 3)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    assert all(sorted(calls[i : i + 3]) == ["a", "b", "c"] for i in range(0, 18, 3))


def test_interleaved_rounds_of_nothing_are_empty_and_no_rounds_are_refused():
    from timm_pushpull.benchmarks.timing import interleaved_medians

    assert interleaved_medians({}, rounds=3) == {}
    for rounds in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="rounds must be an int >= 1"):
            interleaved_medians({"a": lambda: None}, rounds=rounds)


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"rounds": 0}, {"runs": 1.5}])
def test_lane_benchmark_refuses_no_runs_or_rounds(kwargs):
    from timm_pushpull.benchmarks.models import bench_eager_lane

    with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be an int >= 1"):
        bench_eager_lane(**kwargs)


def test_out_of_place_variant_of_the_benchmark_computes_the_layer():
    import torch

    from timm_pushpull.benchmarks.layers import _OutOfPlaceEpilogue
    from timm_pushpull.layers import PushPull2d

    for in_ch, kernel, stride in ((8, 3, 1), (3, 7, 2)):
        layer, x = (
            PushPull2d(in_ch, 64, kernel, stride, kernel // 2).eval(),
            torch.randn(2, in_ch, 16, 16),
        )
        with torch.no_grad():
            torch.testing.assert_close(_OutOfPlaceEpilogue(layer)(x), layer(x))


def test_bench_command_runs_a_section_and_keeps_an_existing_output(tmp_path, capsys):
    from timm_pushpull.cli import main

    output = tmp_path / "tables.md"
    assert main(["bench", "--section", "layers", "--quick", "--output", str(output)]) == 0
    text = output.read_text()
    assert "### Push-pull layer vs conv" in text and text.count("| PushPull2d fast |") == 2
    assert "### Push-pull layer vs conv" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists; refusing to overwrite"):
        main(["bench", "--section", "layers", "--output", str(output)])
    assert output.read_text() == text


_FAULTS_PER_CALL = """
import ctypes, resource, sys, torch
from timm_pushpull.benchmarks.timing import steady_allocator
# glibc's state where every block of 128 KiB or more is mapped anew (M_MMAP_THRESHOLD, fixed)
assert ctypes.CDLL(None).mallopt(-3, 128 << 10)
if sys.argv[1] == "steady":
    assert steady_allocator()
x = torch.randn(4, 64, 56, 56)
conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
with torch.no_grad():
    for _ in range(3):
        conv(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        conv(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt and page-fault counts",
)
def test_steady_allocator_stops_the_page_faults_of_a_conv_output():
    """A conv's 3 MiB output, allocated and freed on every call: where glibc maps such blocks
    afresh (hundreds of page faults a call), the benchmarks' allocator keeps them in its heap."""

    def faults(mode: str) -> float:
        result = subprocess.run(
            [sys.executable, "-c", _FAULTS_PER_CALL, mode],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(result.stdout.strip().splitlines()[-1])

    assert faults("mapped") > 100
    assert faults("steady") < 10


def test_median_range_of_repeated_ratios():
    from timm_pushpull.benchmarks.timing import median_range

    assert median_range([1.40, 1.36, 1.39]) == "1.39x (1.36-1.40)"
    assert median_range([1.2, 1.0]) == "1.10x (1.00-1.20)"
