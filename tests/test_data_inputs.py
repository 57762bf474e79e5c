"""Hostile inputs to the list data sets (issue 12): every Pillow mode, odd files where a
picture should be, odd list and class-name files, and labels that look like numbers. Each
gives the right pixels or one UserError naming the file (and list line) and what is accepted."""

import os
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from data.augment import eval_transform
from data.image_files import to_rgb
from data.list_dataset import ListDataset, load_image, load_mask, read_class_names, read_list_file
from utils.errors import UserError

PALETTE = [0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] * 64


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def filled(mode: str, value, size: tuple[int, int] = (4, 4)) -> Image.Image:
    image = Image.new(mode, size, value)
    if mode in ("P", "PA"):
        image.putpalette(PALETTE)
    return image


def refused(call, *args) -> str:
    with pytest.raises(UserError) as error:
        call(*args)
    return str(error.value)


# ---- what each Pillow mode becomes ---------------------------------------------------

@pytest.mark.filterwarnings("error")  # no Pillow warnings on the way either
@pytest.mark.parametrize("mode, suffix, value, rgb", [
    ("1", ".png", 1, (255, 255, 255)),
    ("L", ".png", 100, (100, 100, 100)),
    ("LA", ".png", (100, 0), (100, 100, 100)),  # alpha dropped
    ("P", ".png", 3, (70, 80, 90)),  # the palette colour
    ("PA", ".tif", (2, 0), (40, 50, 60)),
    ("RGB", ".png", (1, 2, 3), (1, 2, 3)),
    ("RGBA", ".png", (10, 20, 30, 0), (10, 20, 30)),  # transparent pixels keep their colour
    ("CMYK", ".tif", (0, 255, 255, 0), (255, 0, 0)),
    ("YCbCr", ".tif", (128, 128, 128), (128, 128, 128)),
    ("I;16", ".png", 4000, (15, 15, 15)),  # 4000 >> 8; was 255 (white) before issue 12
    ("I;16", ".png", 65535, (255, 255, 255)),
    ("I;16B", ".tif", 40000, (156, 156, 156)),
    ("I;16L", ".tif", 257 * 77, (77, 77, 77)),
    ("I", ".tif", 40000, (156, 156, 156)),  # 32-bit integer read as 16-bit grey
    ("F", ".tif", 0.25, (64, 64, 64)),  # round(0.25 * 255)
])
def test_each_mode_becomes_the_documented_rgb(tmp_path: Path, mode, suffix, value, rgb) -> None:
    path = save(filled(mode, value), tmp_path / f"picture{suffix}")
    with Image.open(path) as stored:
        assert stored.mode.startswith(mode[:4])  # the file really holds that mode
    image = load_image(path, "list.txt:1")
    assert image.dtype == torch.uint8 and image.shape == (3, 4, 4)
    assert image[:, 2, 1].tolist() == list(rgb)


def test_palette_transparency_is_dropped_without_a_warning(tmp_path: Path, recwarn) -> None:
    for name, transparency in (("index.png", 3), ("bytes.png", bytes([0, 0, 0, 0] + [255] * 252))):
        path = save(filled("P", 3), tmp_path / name, transparency=transparency)
        assert load_image(path, "list.txt:1")[:, 0, 0].tolist() == [70, 80, 90]
    assert not recwarn.list  # Pillow's "should be converted to RGBA images" warning


def test_lab_and_hsv_use_pillows_colour_conversion(tmp_path: Path) -> None:
    lab_red = save(filled("LAB", (138, 209, 198)), tmp_path / "lab.tif")  # sRGB red in Pillow's L*a*b*
    red = load_image(lab_red, "list.txt:1")[:, 0, 0]
    assert (red - torch.tensor([255, 0, 0])).abs().max() <= 8
    hsv_green = filled("HSV", (85, 255, 255))  # no file format holds HSV: converted directly
    assert to_rgb(hsv_green, Path("hsv"), "list.txt:1")[:, 0, 0].tolist() == [0, 255, 0]


def test_a_16_bit_pgm_keeps_its_shades(tmp_path: Path) -> None:
    path = tmp_path / "deep.pgm"
    path.write_bytes(b"P5\n2 1\n65535\n" + bytes([0x12, 0x34, 0xFF, 0xFF]))  # opens as mode I
    assert load_image(path, "list.txt:1")[0].tolist() == [[0x12, 0xFF]]


def test_a_real_data_set_of_16_bit_pictures_trains_on_their_shades(tmp_path: Path) -> None:
    for index, value in enumerate((0, 30000, 65535)):
        save(filled("I;16", value, (8, 8)), tmp_path / f"{index}.png")
    (tmp_path / "train.txt").write_text("0.png 0\n1.png 1\n2.png 1\n")
    dataset = ListDataset(tmp_path / "train.txt", eval_transform(8))
    assert [round(dataset[i]["image"][0, 0, 0].item(), 2) for i in range(3)] == [-1.0, -0.08, 1.0]


@pytest.mark.parametrize("mode, value, message", [
    ("F", 1.5, "is a 32-bit float picture (mode F) with values from 1.5 to 1.5; float pictures "
               "are read only with values in [0, 1]"),
    ("F", float("nan"), "with no finite values and NaN or infinite ones"),
    ("I", 70000, "is an integer picture (mode I) with values from 70000 to 70000; integer "
                 "pictures are read as 16-bit grey, values 0..65535"),
    ("I", -5, "with values from -5 to -5"),
])
def test_pictures_that_cannot_be_mapped_to_8_bit_are_refused(tmp_path: Path, mode, value, message) -> None:
    path = save(filled(mode, value), tmp_path / "wide.tif")
    text = refused(load_image, path, "list.txt:4")
    assert text.startswith(f"The image {path} (listed at list.txt:4) ") and message in text


def test_an_unknown_mode_is_refused_by_name() -> None:
    text = refused(to_rgb, Image.new("La", (2, 2)), Path("odd.png"), "list.txt:2")
    assert "The image odd.png (listed at list.txt:2) has mode La, which cannot be converted" in text
    assert "Accepted modes: 1, L, LA, P" in text


# ---- masks --------------------------------------------------------------------------

@pytest.mark.parametrize("mode, suffix", [("I;16", ".png"), ("I;16B", ".tif"), ("I", ".tif")])
def test_wide_integer_masks_whose_values_are_class_ids(tmp_path: Path, mode, suffix) -> None:
    mask = filled(mode, 0)
    mask.putpixel((1, 2), 255)
    path = save(mask, tmp_path / f"mask{suffix}")
    ids = load_mask(path, "seg.txt:1")
    assert ids.dtype == torch.uint8 and ids.shape == (1, 4, 4)
    assert ids[0, 2, 1] == 255 and ids.sum() == 255


@pytest.mark.parametrize("mode, value, bad", [("I;16", 300, "300"), ("I", 70000, "70000"), ("I", -1, "-1")])
def test_wide_masks_with_values_beyond_class_ids_name_the_value(tmp_path: Path, mode, value, bad) -> None:
    mask = filled(mode, 0)
    mask.putpixel((0, 0), value)
    path = save(mask, tmp_path / "mask.tif")
    text = refused(load_mask, path, "seg.txt:3")
    assert f"The label image {path} (listed at seg.txt:3) holds the value {bad}" in text
    assert "a mask holds class ids 0..255" in text


@pytest.mark.parametrize("mode, value", [("1", 1), ("LA", (1, 255)), ("RGBA", (1, 1, 1, 255)),
                                         ("F", 1.0), ("CMYK", (0, 0, 0, 0))])
def test_masks_of_other_modes_are_refused(tmp_path: Path, mode, value) -> None:
    path = save(filled(mode, value), tmp_path / "mask.tif")
    assert f"has mode {mode}; a mask must be a single-channel PNG" in refused(load_mask, path, "seg.txt:1")


def seg_list(tmp_path: Path, image_size: tuple[int, int], mask_size: tuple[int, int]) -> Path:
    save(Image.new("RGB", image_size), tmp_path / "a.png")
    save(Image.new("L", mask_size), tmp_path / "a_mask.png")
    (tmp_path / "seg_classes.txt").write_text("background\nthing\n")
    (tmp_path / "seg.txt").write_text("a.png a_mask.png\n")
    return tmp_path / "seg.txt"


def test_a_mask_of_another_size_than_its_image_is_refused(tmp_path: Path) -> None:
    dataset = ListDataset(seg_list(tmp_path, (8, 6), (6, 8)), eval_transform(8))  # resizing would hide it
    assert (f"The label image {tmp_path}/a_mask.png (6 x 8 pixels) and its image {tmp_path}/a.png "
            f"(8 x 6), listed at {tmp_path}/seg.txt:1, differ in size") in refused(dataset.__getitem__, 0)


# ---- what stands where a picture should be ------------------------------------------

def image_list(tmp_path: Path, name: str) -> ListDataset:
    (tmp_path / "train.txt").write_text(f"{name} 0\n")
    return ListDataset(tmp_path / "train.txt", eval_transform(8))


def test_a_directory_given_as_an_image(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    text = refused(image_list(tmp_path, "folder.png").__getitem__, 0)
    assert text == f"The image {tmp_path}/folder.png (listed at {tmp_path}/train.txt:1) is a directory, not a file."


@pytest.mark.parametrize("make, description", [
    (lambda p: os.symlink(p, p), "is a symbolic link that loops (following it leads back to itself)"),
    (lambda p: os.symlink(p.parent / "gone.png", p), "is a symbolic link to {dir}/gone.png, which does not exist"),
    (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file"),  # never opened: no hang
    (lambda p: socket.socket(socket.AF_UNIX).bind(str(p)), "is a socket, not a regular file"),
])
def test_links_pipes_and_sockets_given_as_an_image(tmp_path: Path, make, description) -> None:
    make(tmp_path / "x.png")
    text = refused(image_list(tmp_path, "x.png").__getitem__, 0)
    assert f"The image {tmp_path}/x.png (listed at {tmp_path}/train.txt:1) {description.format(dir=tmp_path)}." == text


def test_a_device_given_as_an_image_or_a_mask(tmp_path: Path) -> None:
    assert "/dev/null (listed at list.txt:1) is a character device, not a regular file" in refused(
        load_image, Path("/dev/null"), "list.txt:1")
    assert "The label image /dev/zero (listed at seg.txt:2) is a character device" in refused(
        load_mask, Path("/dev/zero"), "seg.txt:2")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: permissions do not apply")
def test_an_unreadable_image(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (2, 2)), tmp_path / "secret.png")
    path.chmod(0)
    assert "secret.png (listed at list.txt:1) cannot be read: permission denied" in refused(
        load_image, path, "list.txt:1")


def test_a_windows_path_on_linux_says_why_it_is_missing(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    save(Image.new("RGB", (2, 2)), tmp_path / "images" / "a.png")  # there, but not under that name
    assert refused(image_list(tmp_path, "images\\a.png").__getitem__, 0).endswith(
        "does not exist (\\ is not a folder separator here: write paths with /).")


def test_swapped_columns_in_a_mask_list(tmp_path: Path) -> None:
    seg = seg_list(tmp_path, (8, 8), (8, 8))
    seg.write_text("a_mask.png a.png\n")
    text = refused(ListDataset(seg, eval_transform(8)).__getitem__, 0)
    assert "a.png (listed at" in text and "has mode RGB" in text and "`<image> <mask>`, in that order" in text


def test_a_path_too_long_for_the_file_system(tmp_path: Path) -> None:
    dataset = image_list(tmp_path, "a" * 5000 + ".png")
    text = refused(dataset.__getitem__, 0)
    assert f"characters) (listed at {tmp_path}/train.txt:1) has a name too long for the file system." in text
    assert len(text) < 400  # the path is shown shortened


@pytest.mark.parametrize("content, message", [
    (b"", "is empty (0 bytes)."),
    (b"\x89PNG\r\n\x1a\n", "cannot be decoded"),
    (b"GIF89a\x00", "cannot be decoded"),
])
def test_empty_and_cut_short_files(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "bad.png").write_bytes(content)
    assert message in refused(load_image, tmp_path / "bad.png", "list.txt:1")


@pytest.mark.parametrize("format, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_pictures(tmp_path: Path, format: str, suffix: str) -> None:
    whole = save(Image.effect_noise((64, 64), 60).convert("RGB"), tmp_path / f"whole{suffix}", format=format)
    (tmp_path / f"cut{suffix}").write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    text = refused(load_image, tmp_path / f"cut{suffix}", "list.txt:9")
    assert f"cut{suffix} (listed at list.txt:9) cannot be decoded" in text and "complete files" in text


def test_a_png_with_zero_width(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)  # width 0, height 5, 8-bit RGB
    (tmp_path / "flat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    text = refused(load_image, tmp_path / "flat.png", "list.txt:1")
    assert "flat.png (listed at list.txt:1) cannot be decoded: not a picture format Pillow knows, or its" in text


def test_over_the_decompression_bomb_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for side in (12, 20):  # Pillow warns above the limit, and raises above twice the limit
        path = save(Image.new("L", (side, side)), tmp_path / f"huge{side}.png")
        text = refused(load_image, path, "list.txt:1")
        assert f"huge{side}.png (listed at list.txt:1) has {side * side} pixels, over Pillow's limit of 100 " in text
        assert "raise the limit at the top of data/image_files.py" in text


def test_an_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), color) for color in ((255, 0, 0), (0, 0, 255))]
    path = save(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(path) as stored:
        assert stored.n_frames == 2
    assert load_image(path, "list.txt:1")[:, 0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (32, 16), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 16, 16))  # red left half, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write it
    path = save(stored, tmp_path / "phone.jpg", exif=exif, quality=95)
    image = load_image(path, "list.txt:1").int()
    assert image.shape == (3, 32, 16)  # shown upright: 16 wide, 32 tall, the red half on top
    assert (image[:, 4, 8] - torch.tensor([255, 0, 0])).abs().max() < 30
    assert (image[:, 28, 8] - torch.tensor([0, 0, 255])).abs().max() < 30


def test_errors_cross_the_dataloader_worker_boundary(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    batches = iter(torch.utils.data.DataLoader(image_list(tmp_path, "folder.png"), num_workers=1))
    with pytest.raises(UserError) as error:
        next(batches)
    batches._shutdown_workers()  # now: left to the garbage collector, torch waits 5 s for the worker
    assert str(error.value) == (f"The image {tmp_path}/folder.png (listed at {tmp_path}/train.txt:1) "
                                "is a directory, not a file.")


# ---- list files ---------------------------------------------------------------------

def test_a_bom_is_not_part_of_the_first_path(tmp_path: Path) -> None:
    absolute = save(Image.new("RGB", (2, 2)), tmp_path / "a.png")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_bytes(f"\ufeff{absolute} 0\n".encode())
    assert read_list_file(tmp_path / "lists" / "train.txt")[0].image == absolute


@pytest.mark.parametrize("dense, name", [(False, "classes.txt"), (True, "seg_classes.txt")])
def test_a_bom_is_not_part_of_the_first_class_name(tmp_path: Path, dense: bool, name: str) -> None:
    (tmp_path / name).write_bytes("\ufeffcat\r\ndog\r\n\r\n".encode())
    assert read_class_names(tmp_path / "train.txt", dense) == ["cat", "dog"]


def test_class_names_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_bytes("chat\nlévrier\n".encode("latin-1"))
    assert (f"Class names file {tmp_path}/classes.txt is not UTF-8 text: byte 0xe9 on line 2 "
            "cannot be decoded. Save it as UTF-8 text.") in refused(read_class_names, tmp_path / "train.txt", False)


def test_a_blank_line_between_class_names_would_shift_ids(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("cat\n\ndog\n")
    assert f"{tmp_path}/classes.txt:2 is blank" in refused(read_class_names, tmp_path / "train.txt", False)
    (tmp_path / "classes.txt").write_text("\n  \n")
    assert "names no classes" in refused(read_class_names, tmp_path / "train.txt", False)


def test_a_classes_file_that_is_a_directory_is_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").mkdir()
    assert (f"Class names file {tmp_path}/classes.txt is a directory, not a file."
            in refused(read_class_names, tmp_path / "train.txt", False))


def test_spaces_tabs_and_line_ends(tmp_path: Path) -> None:
    text = "my photos/a b.png   1\r\n \t \r\nc.png\t2\r\n\nd.png 0\re.png 3\n   \n"
    (tmp_path / "train.txt").write_text(text, newline="")
    entries = read_list_file(tmp_path / "train.txt")
    assert [(e.image.relative_to(tmp_path).as_posix(), e.label, e.where[-2:]) for e in entries] == [
        ("my photos/a b.png", 1, ":1"), ("c.png", 2, ":3"), ("d.png", 0, ":5"), ("e.png", 3, ":6")]


def test_line_numbers_count_only_real_line_breaks(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a.png 0\nform\x0cfeed.png 1\nno_label\n")  # \x0c: not a line end
    assert f"Malformed line {tmp_path}/train.txt:3: 'no_label'" in refused(read_list_file, tmp_path / "train.txt")


def test_a_comma_separated_line(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a.png,0\n")
    assert "Expected `<image path> <label>` (separated by a space or a tab, not a comma)" in refused(
        read_list_file, tmp_path / "train.txt")


def test_a_very_long_line_is_quoted_short(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("x" * 100_000 + "\n")
    text = refused(read_list_file, tmp_path / "train.txt")
    assert "... (100000 characters)" in text and len(text) < 400


@pytest.mark.parametrize("content, message", [
    (bytes(range(128, 256)), "is not UTF-8 text: byte 0x80 on line 1 cannot be decoded."),
    ("a.png 0\n".encode("utf-16"), "It looks like UTF-16 (Windows \"Unicode\")."),
    (b"a.png 0\n\x00\x00\x01 0\n", "holds a NUL byte on line 2: it is binary, not text."),
])
def test_list_files_that_are_not_text(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "train.txt").write_bytes(content)
    assert f"List file {tmp_path}/train.txt " in (text := refused(read_list_file, tmp_path / "train.txt"))
    assert message in text


@pytest.mark.parametrize("make, description", [
    (Path.mkdir, "is a directory, not a file."),
    (os.mkfifo, "is a FIFO (named pipe), not a regular file."),
])
def test_list_files_that_are_not_files(tmp_path: Path, make, description: str) -> None:
    make(tmp_path / "train.txt")
    assert refused(read_list_file, tmp_path / "train.txt").startswith(f"List file {tmp_path}/train.txt {description}")


# ---- labels -------------------------------------------------------------------------

WHOLE = "class ids are whole numbers 0, 1, 2, ... written with the digits 0-9"


@pytest.mark.parametrize("label, advice", [
    ("0.0", "write 0"), ("1e3", "write 1000"), ("+1", "write 1"), ("١", "write 1"), ("07.00", "write 7"),
    ("1.5", WHOLE), ("-1.0", WHOLE), ("²", WHOLE), ("1,5", WHOLE), ("nan", WHOLE),
])
def test_labels_that_look_like_numbers_but_are_not_class_ids(tmp_path: Path, label: str, advice: str) -> None:
    (tmp_path / "seg_classes.txt").write_text("background\n")  # not the way out: it stays an error
    (tmp_path / "train.txt").write_text(f"a.png 0\nb.png {label}\n")
    assert refused(read_list_file, tmp_path / "train.txt") == (
        f"Label {label} at {tmp_path}/train.txt:2 is not an integer class id; {advice}.")


def test_what_counts_as_a_mask_path(tmp_path: Path) -> None:
    (tmp_path / "mask_0001").write_bytes(b"")  # an existing file needs no suffix
    (tmp_path / "train.txt").write_text("a.png masks/m\nb.png m.PNG\nc.png mask_0001\nd.png 0.0.png\n")
    labels = [entry.label for entry in read_list_file(tmp_path / "train.txt")]
    assert labels == [tmp_path / "masks/m", tmp_path / "m.PNG", tmp_path / "mask_0001", tmp_path / "0.0.png"]


def test_a_class_name_instead_of_a_class_id(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a.png cat\n")
    assert refused(read_list_file, tmp_path / "train.txt").startswith(
        f"Label 'cat' at {tmp_path}/train.txt:1 is neither a class id (a whole number 0, 1, 2, ...) "
        "nor a mask path")
