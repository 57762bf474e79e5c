"""Reading one picture or mask file: a clear error for anything that is not a readable
picture, and what each Pillow mode becomes.

Why in one place: Pillow hands back a dozen pixel formats ("modes"), and a plain
`.convert("RGB")` turns some into nonsense (16-bit PNGs become all white). Each mode here
gets an explicit rule, and a mode without one is refused by name.

Every picture is read as a photo viewer shows it: the first frame of an animated file, with
its EXIF orientation applied (a phone photo taken upright is upright). `to_rgb` makes:

    mode                R, G, B (uint8)
    1                   0 or 255 in all three channels
    L                   the grey value in all three
    LA                  the grey value; alpha dropped
    P                   the palette colour; transparency dropped
    PA                  the palette colour; alpha dropped
    RGB, RGBX           as stored
    RGBA                the colour as stored; alpha dropped
    CMYK, YCbCr, HSV    Pillow's conversion to RGB
    LAB                 Pillow's conversion (CIE L*a*b* to sRGB, by LittleCMS)
    I;16 (L, B, N)      16-bit grey: value >> 8 (0..65535 -> 0..255) in all three
    I                   32-bit integer grey (16-bit PGM files, integer TIFFs): value >> 8
                        when every value is in 0..65535; refused otherwise
    F                   32-bit float grey: round(value * 255) when every value is in
                        [0, 1]; refused otherwise (no one scale fits arbitrary floats)
    any other           refused, naming the mode

JPEGs in colour or grey (almost every photo) are decoded by torchvision.io's decode_jpeg
(libjpeg-turbo, as Pillow's: the same pixels, in about 0.7 of the CPU time; EXIF orientation
applied the same way); every other file, CMYK JPEGs and any JPEG it cannot decode go to
Pillow, which reads them by the table above or refuses them with the reason (`read_rgb`).

`to_class_ids` reads a mask: L, or P (the palette indices, not their colours), as stored;
16- and 32-bit integer masks (I;16..., I) when every value fits a class id (0..255);
anything else is refused.
"""

import errno
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2.functional import pil_to_tensor

from utils.errors import UserError

# torchvision 0.29 marks its image decoders deprecated (for TorchCodec) on every call; they are
# what the template uses while they exist, and Pillow reads every picture once they are gone.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)
try:
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:
    decode_jpeg = None

# Pillow refuses pictures over Image.MAX_IMAGE_PIXELS pixels (89,478,485 by default), a guard
# against "decompression bombs": small files that decode to gigabytes. For truly huge
# pictures raise it here (None: no limit); this file is imported by every DataLoader worker:
# Image.MAX_IMAGE_PIXELS = 400_000_000
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
PILLOW_TO_RGB = ("1", "L", "LA", "P", "PA", "RGB", "RGBX", "RGBA", "CMYK", "YCbCr", "HSV", "LAB")
ACCEPTED_MODES = ", ".join(PILLOW_TO_RGB + SIXTEEN_BIT + ("I", "F"))
JPEG_START = b"\xff\xd8\xff"  # the start-of-image marker and the next marker's first byte
FILE_KINDS = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
              stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


def file_problem(path: Path) -> str | None:
    """What keeps `path` from being read as a regular file, in words ("is a directory"), or
    None. Checked before opening, so that a FIFO or a device never blocks the reader."""
    try:
        mode = path.stat().st_mode
    except ValueError:  # os.stat's answer to a NUL character in the path
        return "is not a valid path (it holds a NUL character)"
    except OSError as error:
        return _stat_problem(path, error)
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    for is_kind, kind in FILE_KINDS.items():
        if is_kind(mode):
            return f"is {kind}, not a regular file"
    return None


def _stat_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symbolic link that loops (following it leads back to itself)"
    if error.errno == errno.ENAMETOOLONG:
        return "has a name too long for the file system"
    if error.errno == errno.EACCES:
        return "cannot be reached: permission denied on one of its folders"
    if error.errno == errno.ENOTDIR:
        return "does not exist (a part of its path is a file, not a folder)"
    if os.path.islink(path):
        return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    if "\\" in str(path):
        return "does not exist (\\ is not a folder separator here: write paths with /)"
    return "does not exist"


def open_picture(path: Path, where: str, what: str) -> Image.Image:
    """Decode a picture file fully (first frame, EXIF orientation applied); a UserError naming
    the file and its list line for anything that is not a picture Pillow can decode."""
    problem = file_problem(path)
    if problem:
        shown = str(path) if len(str(path)) <= 300 else f"{str(path)[:120]}... ({len(str(path))} characters)"
        raise UserError(f"The {what} {shown} (listed at {where}) {problem}.")
    try:
        with open(path, "rb") as file, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file)
            image.load()  # decodes now, so that errors surface here, while the file is open
            ImageOps.exif_transpose(image, in_place=True)
    except PermissionError:
        raise UserError(f"The {what} {path} (listed at {where}) cannot be read: permission "
                        "denied. Check the file's permissions (ls -l).") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise UserError(_too_many_pixels(path, where, what, error)) from None
    except Exception as error:  # Pillow's decoders say "not a picture" with many exception types
        raise UserError(_undecodable(path, where, what, error)) from None
    if 0 in image.size:
        raise UserError(f"The {what} {path} (listed at {where}) has no pixels "
                        f"({image.width} x {image.height}).")
    return image


def _undecodable(path: Path, where: str, what: str, error: Exception) -> str:
    if os.path.getsize(path) == 0:  # stat()ed a moment ago: a regular file
        return f"The {what} {path} (listed at {where}) is empty (0 bytes)."
    if isinstance(error, UnidentifiedImageError):  # its text names the file object, not the path
        reason = "not a picture format Pillow knows, or its header is damaged"
    else:
        reason = str(error) or type(error).__name__
    return (f"The {what} {path} (listed at {where}) cannot be decoded: {reason}. "
            "Accepted: the formats Pillow reads (PNG, JPEG, BMP, TIFF, ...), complete files.")


def _too_many_pixels(path: Path, where: str, what: str, error: Exception) -> str:
    # Pillow's message is "Image size (<n> pixels) exceeds limit of <m> pixels, ...".
    pixels = str(error).split("(", 1)[-1].split(" pixels", 1)[0]
    size = f"{int(pixels):,} pixels" if pixels.isdigit() else "too many pixels"
    return (f"The {what} {path} (listed at {where}) has {size}, over Pillow's limit of "
            f"{Image.MAX_IMAGE_PIXELS:,} (Image.MAX_IMAGE_PIXELS, a guard against decompression "
            "bombs). If your pictures are truly this large, raise the limit at the top of "
            "data/image_files.py.")


def read_rgb(path: Path, where: str) -> torch.Tensor:
    """A picture file as an RGB uint8 tensor (3, H, W): a JPEG in colour or grey by
    torchvision.io (faster), anything else by Pillow (`to_rgb`), with the same errors."""
    image = read_plain_jpeg(path)
    return image if image is not None else to_rgb(open_picture(path, where, "image"), path, where)


def read_plain_jpeg(path: Path) -> torch.Tensor | None:
    """A JPEG whose Pillow mode is RGB or L, decoded by torchvision.io, as RGB; None for
    anything else (not a JPEG, CMYK, over Pillow's pixel limit, damaged, unreadable): Pillow
    then reads it, or says what is wrong. Pillow reads only the header here (about 35 µs)."""
    if decode_jpeg is None or file_problem(path):  # a FIFO would block the read; open_picture says what it is
        return None
    try:
        data = path.read_bytes()
        if not data.startswith(JPEG_START):
            return None
        with Image.open(io.BytesIO(data)) as header:  # parses the markers only; no pixels decoded
            width, height = header.size
            if header.format != "JPEG" or header.mode not in ("RGB", "L") or 0 in header.size or \
                    (Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS):
                return None
        image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED,
                            apply_exif_orientation=True)
    except Exception:  # Pillow, below, decodes it or names the problem
        return None
    if image.shape[0] == 1:  # grey: the value in all three channels, as Pillow's L -> RGB
        return image.expand(3, -1, -1).contiguous()
    return image if image.shape[0] == 3 else None


def to_rgb(image: Image.Image, path: Path, where: str) -> torch.Tensor:
    """An RGB uint8 tensor (3, H, W) of any picture, by the table in the module docstring."""
    if image.mode in SIXTEEN_BIT or image.mode == "I":
        grey = _sixteen_bit_values(image, path, where) >> 8
    elif image.mode == "F":
        grey = np.rint(_unit_float_values(image, path, where) * 255)
    elif image.mode in PILLOW_TO_RGB:
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # the direct way warns about byte transparency
        try:
            return pil_to_tensor(image.convert("RGB"))
        except (ValueError, OSError, ImportError) as error:  # LAB needs Pillow's LittleCMS
            raise UserError(_mode_refused(path, where, image.mode, f" ({error})")) from None
    else:
        raise UserError(_mode_refused(path, where, image.mode))
    return torch.from_numpy(grey.astype(np.uint8)).expand(3, -1, -1).contiguous()


def _mode_refused(path: Path, where: str, mode: str, reason: str = "") -> str:
    return (f"The image {path} (listed at {where}) has mode {mode}, which cannot be converted "
            f"to RGB faithfully{reason}. Accepted modes: {ACCEPTED_MODES}.")


def to_class_ids(mask: Image.Image, path: Path, where: str) -> torch.Tensor:
    """A (1, H, W) uint8 tensor of class ids, by the rules in the module docstring."""
    if mask.mode in ("L", "P"):
        return pil_to_tensor(mask)
    if mask.mode in SIXTEEN_BIT or mask.mode == "I":
        values = np.asarray(mask).astype(np.int64)
        if values.min() < 0 or values.max() > 255:
            bad = values.max() if values.max() > 255 else values.min()
            raise UserError(f"The label image {path} (listed at {where}) holds the value {bad} "
                            f"(mode {mask.mode}; its values run from {values.min()} to {values.max()}), "
                            "but a mask holds class ids 0..255, one a pixel.")
        return torch.from_numpy(values.astype(np.uint8))[None]
    raise UserError(f"The label image {path} (listed at {where}) has mode {mask.mode}; a mask "
                    "must be a single-channel PNG (mode L or P, or 16-bit grey with values up to "
                    "255) holding one class id per pixel. Lines are `<image> <mask>`, in that order.")


def _sixteen_bit_values(image: Image.Image, path: Path, where: str) -> np.ndarray:
    """The values of an integer grey picture, refused unless all lie in 0..65535."""
    values = np.asarray(image).astype(np.int64)
    if values.min() < 0 or values.max() > 65535:
        raise UserError(f"The image {path} (listed at {where}) is an integer picture (mode "
                        f"{image.mode}) with values from {values.min()} to {values.max()}; integer "
                        "pictures are read as 16-bit grey, values 0..65535. Save it as an 8- or "
                        "16-bit PNG (scaled as you intend), or read it in your own data set.")
    return values


def _unit_float_values(image: Image.Image, path: Path, where: str) -> np.ndarray:
    """The values of a float picture, refused unless all lie in [0, 1]."""
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        finite = values[np.isfinite(values)]
        spread = f"values from {finite.min():g} to {finite.max():g}" if finite.size else "no finite values"
        extra = " and NaN or infinite ones" if finite.size < values.size else ""
        raise UserError(f"The image {path} (listed at {where}) is a 32-bit float picture (mode F) "
                        f"with {spread}{extra}; float pictures are read only with values in [0, 1]. "
                        "Save it as an 8- or 16-bit PNG (scaled as you intend), or read it in your "
                        "own data set.")
    return values
