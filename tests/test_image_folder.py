"""Image folders read so that no file silently changes the data: directory links refused (a loop
multiplied 8 images into 328), 16-bit images scaled to 8 bits rather than clipped to white, and a
file that is not a readable image named in one error."""

import os

import numpy as np
import pytest
from PIL import Image
from test_robustness_data import make_imagenet_c

from timm_pushpull.cli import main
from timm_pushpull.data.dataset_factory import create_dataset
from timm_pushpull.data.image_folder import ImageFolder, load_image
from timm_pushpull.errors import InvalidArgumentError, UserError
from timm_pushpull.robustness.datasets import ImageNetCFolder


def _folder(root, classes=("a", "b"), count=4):
    for label in classes:
        (root / label).mkdir(parents=True)
        for number in range(count):
            image = np.full((8, 8, 3), 40 * number, np.uint8)
            Image.fromarray(image).save(root / label / f"{number}.png")
    return root


def test_a_plain_folder_reads_every_image_once(tmp_path):
    dataset = create_dataset(f"folder:{_folder(tmp_path / 'data')}", split="validation")
    assert len(dataset) == 8 and sorted(dataset.targets) == [0] * 4 + [1] * 4
    # the root itself may be a link: only links below it are refused
    os.symlink(tmp_path / "data", tmp_path / "link")
    assert len(ImageFolder(tmp_path / "link")) == 8


@pytest.mark.parametrize(
    "link, target",
    [
        ("a/loop", "."),  # back to the root: every image again, under class a, without end
        ("a/sibling", "b"),  # class b's images counted again as class a
        ("b/outside", "../elsewhere"),  # whatever the link points at
        ("c", "../elsewhere"),  # a class folder that is a link
    ],
)
def test_directory_links_below_the_root_are_refused_naming_the_link(tmp_path, link, target):
    root = _folder(tmp_path / "data")
    _folder(tmp_path / "elsewhere", classes=("x",))
    os.symlink((root / target).resolve(), root / link)
    with pytest.raises(InvalidArgumentError, match=f"{root / link} is a link to a directory"):
        create_dataset(f"folder:{root}", split="validation")
    with pytest.raises(InvalidArgumentError, match="is a link to a directory"):
        ImageFolder(root)


def test_imagenet_c_folders_refuse_links_too(tmp_path):
    root = make_imagenet_c(tmp_path / "ImageNet-C", wnids=("n01", "n02"))
    os.symlink(root / "fog" / "1", root / "fog" / "1" / "n01" / "loop")
    with pytest.raises(InvalidArgumentError, match="n01/loop is a link to a directory"):
        ImageNetCFolder(root).dataset("fog", 1)
    assert len(ImageNetCFolder(root).dataset("fog", 2)) == 2


@pytest.mark.parametrize("value", [0, 257, 30000, 65535])
def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path, value):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), value, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")  # PIL opens it as 16-bit grey
    image = load_image(path)
    assert image.mode == "RGB"
    # v / 257 maps 0..65535 onto 0..255, rounded: 30000 / 257 = 116.7
    expected = {0: 0, 257: 1, 30000: 117, 65535: 255}[value]
    assert np.asarray(image).tolist() == np.full((4, 4, 3), expected).tolist()


def test_eight_bit_and_palette_images_read_as_before(tmp_path):
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "grey.png")
    assert np.asarray(load_image(tmp_path / "grey.png")).max() == 77
    Image.new("P", (4, 4), 3).save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").mode == "RGB"


@pytest.mark.parametrize("content", ["text", "truncated"])
def test_a_file_that_is_not_a_readable_image_is_named(tmp_path, content):
    root = _folder(tmp_path / "data")
    bad = root / "b" / "bad.jpg"
    if content == "text":
        bad.write_text("not an image")
    else:
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x.jpg")
        bad.write_bytes((tmp_path / "x.jpg").read_bytes()[:200])
    dataset = create_dataset(f"folder:{root}", split="validation")
    with pytest.raises(InvalidArgumentError, match=f"{bad} is not a readable image"):
        [dataset[index] for index in range(len(dataset))]


def test_empty_class_folder_is_a_user_error(tmp_path):
    root = _folder(tmp_path / "data")
    (root / "empty").mkdir()
    with pytest.raises(UserError, match="Found no valid file for the classes empty"):
        ImageFolder(root)


def test_an_unreadable_image_read_by_a_dataloader_worker_is_one_line(tmp_path, capsys):
    root = _folder(tmp_path / "data")
    (root / "b" / "bad.png").write_text("not an image")
    argv = ["evaluate", "--model", "test_resnet", "--num-classes", "2", "--img-size", "8",
            "--dataset", str(root), "--corruptions", "contrast", "--severities", "1",
            "--workers", "1", "--out", str(tmp_path / "out"), "--no-progress", "--no-report"]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"timm-pushpull evaluate: error: {root / 'b' / 'bad.png'} is not a readable image: "
        f"cannot identify image file '{root / 'b' / 'bad.png'}'"
    )
    assert not (tmp_path / "out").exists()
