"""JPEGs decoded by torchvision.io (issue 28) give Pillow's pixels, and everything else still
goes to Pillow with the same results and errors; --in_memory decodes in threads, in list
order for errors, and refuses a set larger than the free memory."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from data import list_dataset
from data.augment import Augment
from data.image_files import open_picture, read_plain_jpeg, to_rgb
from data.list_dataset import ListDataset, MemListDataset, build_list_dataset, load_image
from utils.errors import UserError

JPEG_TOLERANCE = 2  # grey levels: two builds of libjpeg-turbo may round their IDCT differently


def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A picture with detail in every channel (noise and gradients), so that decoders differ if they can."""
    noise = Image.effect_noise(size, 80)
    gradient = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (noise, gradient, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def by_pillow(path: Path) -> torch.Tensor:
    return to_rgb(open_picture(path, "list.txt:1", "image"), path, "list.txt:1")


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.dtype == torch.uint8 and got.shape == expected.shape
    assert (got.int() - expected.int()).abs().max() <= JPEG_TOLERANCE


@pytest.mark.parametrize("options", [{"quality": 90}, {"quality": 75, "progressive": True},
                                     {"quality": 95, "subsampling": 0}])
def test_a_colour_jpeg_decodes_by_torchvision_to_pillows_pixels(tmp_path: Path, options: dict) -> None:
    path = tmp_path / "photo.jpg"
    photo().save(path, **options)
    fast = read_plain_jpeg(path)
    assert fast is not None  # the torchvision.io path was taken
    assert_close(fast, by_pillow(path))
    assert torch.equal(load_image(path, "list.txt:1"), fast)


def test_a_grey_jpeg_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    photo().convert("L").save(path, quality=90)
    fast = read_plain_jpeg(path)
    assert fast is not None and fast.shape == (3, 64, 96)
    assert torch.equal(fast[0], fast[1]) and torch.equal(fast[0], fast[2])
    assert_close(fast, by_pillow(path))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_applies_it(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    photo().save(path, exif=exif, quality=90)
    fast = read_plain_jpeg(path)
    assert fast is not None
    assert_close(fast, by_pillow(path))


def test_a_cmyk_jpeg_is_left_to_pillows_conversion(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=95)
    assert read_plain_jpeg(path) is None
    with Image.open(path) as stored:
        expected = pil_to_tensor(stored.convert("RGB"))
    assert torch.equal(load_image(path, "list.txt:1"), expected)


@pytest.mark.parametrize("name, mode", [("rgba.png", "RGBA"), ("grey.png", "L"), ("png_named.jpg", "RGB")])
def test_other_formats_still_go_to_pillow(tmp_path: Path, name: str, mode: str) -> None:
    path = tmp_path / name
    Image.new(mode, (5, 3), (10, 20, 30, 0) if mode == "RGBA" else (40 if mode == "L" else (1, 2, 3))).save(
        path, format="PNG")
    assert read_plain_jpeg(path) is None
    value = {"RGBA": [10, 20, 30], "L": [40, 40, 40], "RGB": [1, 2, 3]}[mode]
    assert load_image(path, "list.txt:1")[:, 0, 0].tolist() == value


def test_a_damaged_jpeg_is_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a picture" * 20)
    assert read_plain_jpeg(path) is None
    with pytest.raises(UserError, match=r"bad.jpg \(listed at list.txt:3\) cannot be decoded"):
        load_image(path, "list.txt:3")


def test_a_jpeg_over_pillows_pixel_limit_is_refused_as_before(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (12, 12)).save(path)
    with pytest.raises(UserError, match="huge.jpg .* has 144 pixels, over Pillow's limit of 100"):
        load_image(path, "list.txt:1")


def jpeg_list(folder: Path, count: int) -> Path:
    lines = []
    for index in range(count):
        photo((40 + index % 3, 30)).save(folder / f"{index}.jpg", quality=85)
        lines.append(f"{index}.jpg {index % 2}")
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    return folder / "train.txt"


def test_in_memory_decodes_in_threads_the_same_pixels(tmp_path: Path, monkeypatch) -> None:
    list_path = jpeg_list(tmp_path, 21)
    monkeypatch.setattr(list_dataset, "DECODE_CHUNK", 2)  # many chunks, shared by the threads
    held = {}
    for threads in (1, 4):
        monkeypatch.setattr(list_dataset, "decode_threads", lambda threads=threads: threads)
        held[threads] = build_list_dataset(str(list_path), False, Augment(), image_size=24, in_memory=True)
        assert isinstance(held[threads], MemListDataset)
    assert torch.equal(held[1].images, held[4].images)
    on_disk = build_list_dataset(str(list_path), False, Augment(), image_size=24, in_memory=False)
    assert type(on_disk) is ListDataset
    for index in (0, 10, 20):
        assert torch.equal(held[4][index]["image"], on_disk[index]["image"])


def test_in_memory_names_the_first_bad_file_in_list_order(tmp_path: Path, monkeypatch) -> None:
    list_path = jpeg_list(tmp_path, 12)
    for index in (9, 4):
        (tmp_path / f"{index}.jpg").write_bytes(b"broken")
    monkeypatch.setattr(list_dataset, "DECODE_CHUNK", 1)
    monkeypatch.setattr(list_dataset, "decode_threads", lambda: 3)
    with pytest.raises(UserError, match=r"4.jpg \(listed at .*train.txt:5\) cannot be decoded"):
        build_list_dataset(str(list_path), True, Augment(), image_size=16, in_memory=True)


def test_in_memory_beyond_the_free_memory_is_refused_or_read_from_disk(tmp_path: Path, monkeypatch) -> None:
    list_path = jpeg_list(tmp_path, 4)
    monkeypatch.setattr(list_dataset, "available_memory", lambda: 4 * 3 * 16**2 - 1)  # one byte short
    with pytest.raises(UserError, match=r"--in_memory: the 4 pictures of .* more than this machine can allocate; "
                                        r"use --no-in_memory .*GiB is free now"):
        build_list_dataset(str(list_path), True, Augment(), image_size=16, in_memory=True)
    assert type(build_list_dataset(str(list_path), True, Augment(), image_size=16)) is ListDataset  # unset: disk
    monkeypatch.setattr(list_dataset, "available_memory", lambda: 4 * 3 * 16**2)
    assert isinstance(build_list_dataset(str(list_path), True, Augment(), image_size=16), MemListDataset)


def test_without_torchvisions_decoders_pillow_reads_jpegs(tmp_path: Path, monkeypatch) -> None:
    """torchvision deprecates its decoders (0.29); once they are gone, Pillow reads every picture."""
    from data import image_files

    path = tmp_path / "photo.jpg"
    photo().save(path, quality=90)
    monkeypatch.setattr(image_files, "decode_jpeg", None)
    assert read_plain_jpeg(path) is None
    assert torch.equal(load_image(path, "list.txt:1"), by_pillow(path))


def test_each_torchrun_process_takes_its_share_of_cores_and_memory(monkeypatch) -> None:
    from utils.host_memory import available_memory

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    threads, free = list_dataset.decode_threads(), available_memory()
    assert threads >= 1 and (free is None or free > 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert list_dataset.decode_threads() == max(1, threads // 4)
    if free is not None:  # the free memory moves between the two reads; a quarter is far below the whole
        assert available_memory() < free
