"""The ``timm-pushpull`` command, run for real in subprocesses.

``--help`` must answer without importing torch (checked in ``sys.modules``, not timed), while
``import timm_pushpull`` keeps registering the models. A mistake in what the user asked for ends
in one line on stderr and exit status 2, never a traceback.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_help_does_not_import_torch():
    script = (
        "import json, sys\n"
        "from timm_pushpull_cli import COMMANDS, main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'timm_pushpull') if m in sys.modules)\n"
        "print(json.dumps([code, heavy, sorted(COMMANDS)]))\n"
    )
    done = _python("-c", script)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    code, heavy, commands = json.loads(lines[-1])
    assert code == 0 and heavy == []
    usage = "\n".join(lines[:-1])
    assert "usage: timm-pushpull" in usage
    assert all(command in usage for command in commands)
    assert {"train", "evaluate", "publish", "convert-official"} <= set(commands)


def test_console_script_points_at_the_light_launcher():
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    scripts = config["options.entry_points"]["console_scripts"].strip()
    assert scripts == "timm-pushpull = timm_pushpull_cli:main"
    assert "timm_pushpull_cli" in config["options"]["py_modules"].split()


def test_import_still_registers_the_models():
    done = _python(
        "-c",
        "import timm, timm_pushpull; m = timm.create_model('resnet20_pp'); "
        "print(type(m).__name__, type(m.conv1).__name__)",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CifarResNet", "PushPull2d"]


def _user_error(done: subprocess.CompletedProcess, command: str) -> str:
    """The single stderr line of a refused command."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"timm-pushpull {command}: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "command, arguments",
    [
        ("evaluate", ["--dataset", "fashion_mnist", "--out"]),
        ("train", ["--recipe", "cifar_resnet", "--output"]),
    ],
)
def test_unknown_model_is_one_line(tmp_path, command, arguments):
    done = _python(
        "-m", "timm_pushpull_cli", command, "--model", "resnet20_ppp", *arguments, str(tmp_path / "out")
    )  # fmt: skip
    line = _user_error(done, command)
    assert "'resnet20_ppp'" in line and "not registered" in line
    assert "Did you mean resnet20_pp" in line  # the allowed names closest to it


def test_unreadable_checkpoint_is_one_line(tmp_path):
    checkpoint = tmp_path / "x.safetensors"
    checkpoint.write_text("not weights\n")
    done = _python(
        "-m", "timm_pushpull_cli", "evaluate", "--model", "resnet20_pp", "--checkpoint",
        str(checkpoint), "--dataset", "fashion_mnist", "--out", str(tmp_path / "out"),
        "--device", "cpu",
    )  # fmt: skip
    line = _user_error(done, "evaluate")
    assert str(checkpoint) in line and "not a readable weights file" in line
    assert not (tmp_path / "out").exists()


def test_unknown_recipe_is_one_line(tmp_path):
    # through the package's own entry point, which accelerate launch and torchrun use
    done = _python(
        "-m", "timm_pushpull.cli", "train", "--model", "resnet20_pp", "--recipe", "cifar_resnett",
        "--output", str(tmp_path / "run"),
    )  # fmt: skip
    line = _user_error(done, "train")
    assert "recipe='cifar_resnett'" in line and "'cifar_resnet'" in line  # the allowed recipes
    assert not (tmp_path / "run").exists()
