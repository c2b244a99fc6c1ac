"""The trainer: recipes and overrides, exact resume, run-folder safety, fine-tuning from converted
timm models, two CPU processes, timm's own train script route."""

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from test_data import make_mnist_folder
from timm.models import save_for_hf

from timm_pushpull.layers import PushPull2d
from timm_pushpull.training.checkpoint import RESUME_FILE, load_resume_state
from timm_pushpull.training.config import available_recipes, build_config
from timm_pushpull.training.timm_train import add_arguments as timm_train_arguments
from timm_pushpull.training.timm_train import main as timm_train_main
from timm_pushpull.training.train import add_arguments, config_from_args
from timm_pushpull.training.trainer import (
    _check_resumable,
    _resumed_epoch_stats,
    create_optimizer,
    create_scheduler,
    create_train_model,
    stop_on_signal,
    train,
)

REPO = Path(__file__).resolve().parents[1]
TIMING = ("images_per_s", "epoch_time_s")


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    make_mnist_folder(folder, n_train=64, n_test=16)
    return folder


def tiny_config(data, out, **overrides):
    settings = dict(
        model="lenet5_a", dataset="mnist", data_dir=str(data), epochs=2, batch_size=16,
        eval_batch_size=16, output=str(out), progress=False, workers=0, cpu=True, lr=0.05,
        crop="pad", padding=2, auto_augment="rand-m9-mstd0.5", model_kwargs={"drop_rate": 0.3},
    )  # fmt: skip
    settings.update(overrides)
    return build_config("lenet_mnist", settings)


def read_metrics(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def test_recipes_hold_the_papers_hyperparameters():
    assert {"cifar_resnet", "cifar_densenet", "cifar_wrn", "cifar_wrn_paper", "imagenet_resnet",
            "lenet_mnist"} <= set(available_recipes())  # fmt: skip
    expected = {
        # recipe: (batch, epochs, lr, weight decay, milestones, gamma, nesterov)
        "cifar_resnet": (128, 200, 0.1, 1e-4, [80, 120, 160], 0.1, True),
        "cifar_densenet": (64, 350, 0.1, 1e-4, [150, 225, 300], 0.1, True),
        "cifar_wrn": (128, 200, 0.1, 1e-4, [80, 120, 160], 0.1, True),
        "cifar_wrn_paper": (128, 200, 0.1, 5e-4, [60, 120, 160], 0.2, True),
        "imagenet_resnet": (256, 90, 0.1, 5e-4, [30, 60, 85], 0.1, False),
        "lenet_mnist": (64, 90, 0.01, 5e-4, [30, 60], 0.1, False),
    }
    for recipe, values in expected.items():
        c = build_config(recipe, {"model": "x"})
        got = (c.batch_size, c.epochs, c.lr, c.weight_decay, c.milestones, c.gamma, c.nesterov)
        assert got == values, recipe
        assert c.opt == "sgd" and c.momentum == 0.9
    aa = build_config("cifar_wrn_aa_cutout", {"model": "x"})
    assert (aa.auto_augment, aa.cutout, aa.crop, aa.padding) == ("cifar10", 16, "pad", 4)


def test_command_line_overrides_every_field():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--recipe", "cifar_resnet", "--model", "resnet20_pp", "--epochs", "3", "--lr", "0.05",
         "--milestones", "1,2", "--no-nesterov", "--weight-decay", "5e-4", "--auto-augment", "null",
         "--set", "model_kwargs.pp_h=3", "--set", "cutout=16"]
    )  # fmt: skip
    c = config_from_args(args)
    assert (c.model, c.epochs, c.lr, c.milestones, c.nesterov) == (
        "resnet20_pp",
        3,
        0.05,
        [1, 2],
        False,
    )
    assert (c.weight_decay, c.auto_augment, c.model_kwargs, c.cutout) == (
        5e-4,
        None,
        {"pp_h": 3},
        16,
    )
    assert c.batch_size == 128  # untouched recipe value
    for bad, message in (
        (["--set", "epoch=3"], "unknown setting 'epoch'"),
        (["--epochs", "many"], "epochs='many'"),
        (["--opt", "sgdd"], "opt='sgdd'; allowed"),
        (["--sched", "poly"], "sched='poly'; allowed"),
    ):
        with pytest.raises(ValueError, match=message):
            config_from_args(parser.parse_args(["--recipe", "cifar_resnet", *bad]))
    with pytest.raises(ValueError, match="recipe='cifar_vit'"):
        build_config("cifar_vit")


def test_optimizer_and_schedule_follow_the_recipe():
    c = build_config("cifar_resnet", {"model": "x", "milestones": [2, 4], "gamma": 0.5})
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    optimizer = create_optimizer(model, c)
    assert isinstance(optimizer, torch.optim.SGD)
    # the papers decay every parameter, BN and biases included
    assert all(
        g["weight_decay"] == 1e-4 and g["nesterov"] and g["momentum"] == 0.9
        for g in optimizer.param_groups
    )
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 4
    scheduler, per_step = create_scheduler(optimizer, c, steps_per_epoch=10)
    lrs = []
    for _ in range(5):  # epochs
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert not per_step and lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    # cosine: lr_t = 0.1 * (1 + cos(pi t / T)) / 2 over all T = 2 epochs x 2 steps
    c = build_config("cifar_resnet", {"model": "x", "sched": "cosine", "epochs": 2})
    optimizer = create_optimizer(model, c)
    scheduler, per_step = create_scheduler(optimizer, c, steps_per_epoch=2)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert per_step and lrs == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447, 0.0], abs=1e-6)


def test_onecycle_schedule_warms_up_to_lr_then_anneals_far_below():
    model = torch.nn.Linear(2, 2)
    c = build_config("cifar_resnet", {"model": "x", "sched": "onecycle", "epochs": 2})
    optimizer = create_optimizer(model, c)
    scheduler, per_step = create_scheduler(optimizer, c, steps_per_epoch=5)
    lrs, momenta = [], []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
    # Smith & Topin: from lr / 25 up to lr at 30% of the 10 steps (step 2), cosine down to
    # lr / 25 / 1e4 at the last step; the recipe's momentum is left as it is
    assert per_step and lrs[0] == pytest.approx(0.004) and lrs[2] == pytest.approx(0.1)
    assert max(lrs) == lrs[2] and lrs[-1] == pytest.approx(4e-7)
    assert all(b <= a for a, b in zip(lrs[2:], lrs[3:])) and set(momenta) == {0.9}


def test_interrupted_runs_resume_to_identical_weights(tiny_mnist, tmp_path):
    whole = train(tiny_config(tiny_mnist, tmp_path / "whole"))
    assert whole["global_step"] == 8 and not whole["stopped_early"]
    parts = tmp_path / "parts"
    first = train(tiny_config(tiny_mnist, parts, max_steps=3))  # stops mid-epoch
    assert first["stopped_early"] and not (parts / "model.safetensors").exists()
    state = torch.load(parts / RESUME_FILE, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 3, 3)
    second = train(tiny_config(tiny_mnist, parts, max_steps=6, resume=True))
    assert second["stopped_early"] and load_resume_state(parts)["global_step"] == 6
    final = train(tiny_config(tiny_mnist, parts, resume=True))
    assert final["global_step"] == 8 and not final["stopped_early"]
    a, b = (
        load_file(tmp_path / "whole" / "model.safetensors"),
        load_file(parts / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(tmp_path / "whole") == read_metrics(parts)
    # the final folder is a timm model folder with the recipe's preprocessing
    model = timm.create_model(f"local-dir:{parts}", pretrained=True)
    assert torch.equal(model.state_dict()["fc.weight"], b["fc.weight"])
    cfg = model.pretrained_cfg
    assert tuple(cfg["mean"]) == (0.2860,) and tuple(cfg["input_size"]) == (1, 28, 28)


def test_run_folders_are_never_taken_over(tiny_mnist, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_mnist, run, epochs=1, auto_augment=None))
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        train(tiny_config(tiny_mnist, run, epochs=1, lr=0.2))
    assert (run / "model.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match="lr: 0.05 -> 0.2"):
        train(tiny_config(tiny_mnist, run, epochs=1, lr=0.2, auto_augment=None, resume=True))
    with pytest.raises(FileNotFoundError, match="no checkpoint.pth"):
        train(tiny_config(tiny_mnist, tmp_path / "new", resume=True))
    pytest.importorskip("tensorboard")
    result = train(
        tiny_config(
            tiny_mnist, run, epochs=1, lr=0.2, auto_augment=None, overwrite=True, tensorboard=True
        )
    )
    assert result["global_step"] == 4 and (run / "model.safetensors").read_bytes() != before
    assert len(read_metrics(run)) == 1
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.fixture
def fresh_accelerate_state():
    # Accelerate fixes device and precision once per process; reset it as accelerate's own
    # test utilities (AccelerateTestCase) do, so this run may use another precision
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_bf16_autocast_on_cpu(tiny_mnist, tmp_path, fresh_accelerate_state):
    result = train(tiny_config(tiny_mnist, tmp_path / "bf16", epochs=1, mixed_precision="bf16"))
    assert result["global_step"] == 4 and 0 < result["train_loss"] < 10


def test_fine_tune_from_a_local_timm_model_converted_to_pushpull(tmp_path):
    source = timm.create_model("test_resnet", num_classes=1000)
    save_for_hf(source, tmp_path / "test_resnet", safe_serialization=True)
    weights = source.state_dict()
    for init_from, model in ((tmp_path / "test_resnet", None),
                             (tmp_path / "test_resnet" / "model.safetensors", "test_resnet")):  # fmt: skip
        c = build_config("cifar_resnet", dict(model=model, init_from=str(init_from), convert="stage1",
                                              num_classes=5, convert_kwargs={"pull_scale": 3.0}))  # fmt: skip
        net = create_train_model(c)
        converted = {n: m for n, m in net.named_modules() if isinstance(m, PushPull2d)}
        assert set(converted) == {"conv1.0", "layer1.0.conv1", "layer1.0.conv2"}
        for name, layer in converted.items():
            assert torch.equal(layer.push.weight, weights[f"{name}.weight"])
        assert torch.equal(
            net.state_dict()["layer2.0.conv1.weight"], weights["layer2.0.conv1.weight"]
        )
        assert net.fc.out_features == 5 and net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="set model"):
        create_train_model(
            build_config(None, dict(init_from=str(tmp_path / "test_resnet" / "model.safetensors")))
        )


def _into_hub_cache(hf_home: Path, repo_id: str, folder: Path) -> None:
    """A Hub download as huggingface_hub caches it (refs/main -> snapshots/<commit>/files)."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def _timm_resnet18_weights_landed(net, timm_state, classes):
    """Every timm tensor is where it belongs in the push-pull model (push kernels from convs)."""
    state = net.state_dict()
    for key, value in timm_state.items():
        if key.startswith("fc.") and classes != 1000:
            continue  # timm resets a head of another size
        target = key if key in state else key.removesuffix("weight") + "push.weight"
        assert torch.equal(state[target], value), key


@pytest.mark.parametrize("form", ["safetensors", "pth", "folder"])
def test_init_from_timm_weights_into_an_antialiased_pushpull_model(tmp_path, form):
    """issue 26: --init-from with timm's resnet18 weights into resnet18_pp_b1 with aa."""
    source = timm.create_model("resnet18")
    timm_state = source.state_dict()
    if form == "folder":
        path = tmp_path / "resnet18"
        save_for_hf(source, path, safe_serialization=True)
    elif form == "pth":
        path = tmp_path / "resnet18.pth"
        torch.save({"state_dict": timm_state}, path)
    else:
        path = tmp_path / "resnet18.safetensors"
        save_file(timm_state, path)
    for classes in (1000, 10):
        c = build_config("imagenet_resnet", dict(model="resnet18_pp_b1", init_from=str(path),
                                                 model_kwargs={"aa": "bin3"}, num_classes=classes))  # fmt: skip
        net = create_train_model(c)
        assert net.layer2[0].downsample[0].aa.filter_size == 3
        _timm_resnet18_weights_landed(net, timm_state, classes)
        assert "state_dict" not in net.pretrained_cfg  # no second copy of the weights kept


def test_init_from_a_hub_id_or_timm_name_from_the_offline_cache(tmp_path):
    """hf-hub:ORG/NAME and a timm model name resolve to the Hugging Face cache with no network."""
    source = timm.create_model("resnet18")
    save_for_hf(source, tmp_path / "folder", safe_serialization=True)
    save_file(source.state_dict(), tmp_path / "timm_state.safetensors")
    hf_home = tmp_path / "hf"
    _into_hub_cache(hf_home, "someone/resnet18-test", tmp_path / "folder")
    # timm's default pretrained tag of resnet18 is hosted at timm/resnet18.a1_in1k
    hub_id = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    _into_hub_cache(hf_home, hub_id, tmp_path / "folder")
    script = f"""
import sys, torch
from safetensors.torch import save_file
from timm_pushpull.training.config import build_config
from timm_pushpull.training.trainer import create_train_model
torch.set_num_threads(1)
for i, source in enumerate(sys.argv[1:]):
    c = build_config("imagenet_resnet", dict(model="resnet18_pp_b1", init_from=source,
                                             model_kwargs={{"aa": "bin3"}}))
    save_file(create_train_model(c).state_dict(), f"{tmp_path}/out{{i}}.safetensors")
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(hf_home))
    done = subprocess.run([sys.executable, "-c", script, "hf-hub:someone/resnet18-test", "resnet18"],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    timm_state = load_file(tmp_path / "timm_state.safetensors")
    for i in range(2):
        net = timm.create_model("resnet18_pp_b1", aa="bin3")
        net.load_state_dict(load_file(tmp_path / f"out{i}.safetensors"))
        _timm_resnet18_weights_landed(net, timm_state, 1000)


def test_init_from_a_path_that_is_not_there_says_so(tmp_path):
    c = build_config(None, dict(model="resnet18_pp", init_from=str(tmp_path / "no" / "such.pth")))
    with pytest.raises(
        ValueError,
        match="not a file or folder; a Hugging Face Hub model is written hf-hub:ORG/NAME",
    ):
        create_train_model(c)


def test_two_cpu_processes_match_one_with_the_same_global_batch(tiny_mnist, tmp_path):
    # no dropout: each process draws its own masks, so only the deterministic parts can match
    common = dict(epochs=1, lr=0.1, model_kwargs={})
    single = train(tiny_config(tiny_mnist, tmp_path / "one", **common))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "timm_pushpull.cli", "train", "--recipe", "lenet_mnist", "--model", "lenet5_a",
           "--dataset", "mnist", "--data-dir", str(tiny_mnist), "--epochs", "1", "--batch-size", "16",
           "--eval-batch-size", "16", "--output", str(tmp_path / "two"), "--no-progress", "--workers", "0",
           "--cpu", "--lr", "0.1", "--crop", "pad", "--padding", "2", "--auto-augment", "rand-m9-mstd0.5"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (
        load_file(tmp_path / "one" / "model.safetensors"),
        load_file(tmp_path / "two" / "model.safetensors"),
    )
    # stated tolerance: float32 sums reduced in another order, 4 SGD steps
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    one, two = read_metrics(tmp_path / "one")[0], read_metrics(tmp_path / "two")[0]
    assert one["val_acc"] == two["val_acc"] and one["step"] == two["step"] == 4
    assert two["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)


def test_two_process_resume_matches_an_uninterrupted_two_process_run(tiny_mnist, tmp_path):
    """Each process resumes its own running sums of the interrupted epoch: same weights and the
    same metrics.jsonl (train loss and accuracy included) as without the interruption."""
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def torchrun(out, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "timm_pushpull.cli", "train", "--recipe", "lenet_mnist", "--model",
               "lenet5_a", "--dataset", "mnist", "--data-dir", str(tiny_mnist), "--epochs", "1",
               "--batch-size", "16", "--eval-batch-size", "16", "--output", str(out),
               "--no-progress", "--workers", "0", "--cpu", "--lr", "0.1", *extra]  # fmt: skip
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    torchrun(tmp_path / "whole")
    torchrun(tmp_path / "parts", "--max-steps", "2")  # stops after 2 of the epoch's 4 steps
    saved = load_resume_state(tmp_path / "parts")["epoch_stats"]
    assert len(saved) == 2 and [n for _, _, n in saved] == [16.0, 16.0]  # 2 steps x 8 images each
    torchrun(tmp_path / "parts", "--resume")
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "parts"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(tmp_path / "whole") == read_metrics(tmp_path / "parts")


def test_resumed_epoch_sums_per_process():
    saved = [[1.5, 1.0, 8.0], [2.5, 3.0, 8.0]]
    assert [_resumed_epoch_stats(saved, rank, 2) for rank in (0, 1)] == saved
    # another number of processes: the total on process 0, nothing on the others
    assert [_resumed_epoch_stats(saved, rank, 3) for rank in (0, 1, 2)] == [
        [4.0, 4.0, 16.0],
        None,
        None,
    ]
    assert _resumed_epoch_stats([], 0, 2) is None  # at an epoch boundary


def test_stop_signal_finishes_the_step_then_a_second_aborts():
    # the handler before is restored after, whatever it was (a background job ignores SIGINT)
    before = signal.getsignal(signal.SIGINT)
    # no garbage collection meanwhile: a handler that raises inside a gc callback (hypothesis
    # installs one in this process) has its exception swallowed
    gc.disable()
    try:
        with stop_on_signal() as flag:
            os.kill(os.getpid(), signal.SIGINT)
            assert flag["stop"]
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
    finally:
        gc.enable()
    assert signal.getsignal(signal.SIGINT) is before


def test_timm_train_route_imports_our_models_first(tmp_path):
    # a stand-in for timm's train.py: it creates one of our models by name and never imports us
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, timm\n"
        "imported = 'timm_pushpull' in sys.modules\n"
        "model = timm.create_model(sys.argv[1], num_classes=3)\n"
        "open(sys.argv[2], 'w').write(f'{type(model).__name__} {imported}')\n"
        "sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)\n"
    )
    out = tmp_path / "out.txt"
    run = [
        sys.executable,
        "-m",
        "timm_pushpull.cli",
        "timm-train",
        str(script),
        "lenet5_a_pp",
        str(out),
    ]
    done = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text() == "LeNet5 True"
    # in-process: the script's exit status comes back and argv is restored
    parser = argparse.ArgumentParser()
    timm_train_arguments(parser)
    argv = list(sys.argv)
    assert timm_train_main(parser.parse_args([str(script), "resnet20", str(out), "3"])) == 3
    assert sys.argv == argv and out.read_text() == "CifarResNet True"
    with pytest.raises(FileNotFoundError, match="not in the timm wheel"):
        timm_train_main(parser.parse_args([str(tmp_path / "missing.py")]))


def test_a_run_started_under_a_deprecated_tag_resumes_under_the_new_one(tiny_mnist, tmp_path):
    saved = tiny_config(tiny_mnist, tmp_path, model="lenet5_a.fmnist_demo").to_dict()
    for model in ("lenet5_a.demo_fmnist", "lenet5_a.fmnist_demo"):
        with pytest.warns(DeprecationWarning, match="'fmnist_demo' is deprecated"):
            _check_resumable(dict(saved), tiny_config(tiny_mnist, tmp_path, model=model))
    with pytest.raises(ValueError, match="other settings"), pytest.warns(DeprecationWarning):
        _check_resumable(dict(saved), tiny_config(tiny_mnist, tmp_path, model="lenet5_b"))


@pytest.mark.parametrize("train_samples", [None, 12])
def test_class_names_of_an_hf_dataset_reach_config_json(tmp_path, train_samples):
    """issue 26: training on hf:PATH wrote label_names: None (the names were looked up on the HF
    table instead of its wrapper)."""
    datasets = pytest.importorskip("datasets")
    import numpy as np
    from PIL import Image

    names = [f"class_{c}" for c in "abcdefghij"]
    rng = np.random.default_rng(0)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    split = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(a) for a in rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)],
         "label": [i % 10 for i in range(16)]},
        features=features,
    )  # fmt: skip
    datasets.DatasetDict(train=split, test=split.select(range(4))).save_to_disk(tmp_path / "hf")
    run = tmp_path / "run"
    overrides = dict(dataset=f"hf:{tmp_path / 'hf'}", data_dir=None, epochs=1, batch_size=4,
                     train_samples=train_samples, auto_augment=None, model_kwargs={})  # fmt: skip
    train(tiny_config(None, run, **overrides))
    config = json.loads((run / "config.json").read_text())
    assert config["label_names"] == names
