"""The train and eval transforms (torchvision.transforms.v2), in one place to edit.

Augmentation is off by default: a horizontal flip is wrong for digits, text and many medical
images, and a crop can cut what matters. Turn on what suits your data with the training flags
(`--crop_padding`, `--hflip`, `--vflip`, `--aug_policy`, `--random_erasing`; `--mixup` and
`--cutmix` mix whole batches, see `batch_mix`). v2 transforms move an image and its mask
together, so flips and crops also serve segmentation; transforms that would change a mask's
values (colour policies, erasing, mixing) are refused there (each task's `batch_augment`).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

# --mean / --std by default: maps [0, 1] to [-1, 1], good enough for data with no measured
# statistics. A pretrained model's own (ImageNet's: (0.485, 0.456, 0.406), (0.229, 0.224,
# 0.225)) are its default instead (model/torchvision_net/).
MEAN = (0.5,)
STD = (0.5,)
POLICIES = {
    "none": None,
    "randaugment": v2.RandAugment,
    "trivialaugment": v2.TrivialAugmentWide,
    "autoaugment": v2.AutoAugment,
}


@dataclass(frozen=True)
class Augment:
    """What random changes a training sample gets (all off by default), and the
    normalisation every sample gets (training and evaluation alike)."""

    crop_padding: int = 0  # pixels: pad by this much, then crop back to size (a random shift)
    hflip: float = 0.0  # probability of a horizontal flip
    vflip: float = 0.0  # probability of a vertical flip
    policy: str = "none"  # a key of POLICIES
    random_erasing: float = 0.0  # probability of erasing a random rectangle
    mixup: float = 0.0  # Beta(alpha, alpha) of v2.MixUp; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of v2.CutMix; 0 = off
    mean: tuple[float, ...] = MEAN  # per channel (one value: all channels), --mean
    std: tuple[float, ...] = STD  # --std


def train_transform(augment: Augment, image_size: int, resize: bool = True) -> v2.Compose:
    """Resize (list images come in any size; a data set of one size passes `resize=False`),
    the augmentation of `augment`, then scaling to float and normalising."""
    steps = [v2.Resize((image_size, image_size), antialias=True)] if resize else []
    if augment.crop_padding:
        steps.append(v2.RandomCrop(image_size, padding=augment.crop_padding, padding_mode="edge"))
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip(augment.hflip))
    if augment.vflip:
        steps.append(v2.RandomVerticalFlip(augment.vflip))
    if POLICIES[augment.policy] is not None:
        steps.append(POLICIES[augment.policy]())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(augment.mean, augment.std)]
    if augment.random_erasing:
        steps.append(v2.RandomErasing(augment.random_erasing))
    return v2.Compose(steps)


def eval_transform(image_size: int, resize: bool = True, augment: Augment = Augment()) -> v2.Compose:
    """Resize (unless the data has one size), scale and normalise (`augment.mean`, `.std`)
    only: evaluation sees every sample the same way each time."""
    steps = [v2.Resize((image_size, image_size), antialias=True)] if resize else []
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(augment.mean, augment.std)])


# Steps that do the same to every sample (no random draw), so a batch can go through them at once.
FIXED_STEPS = (v2.Resize, v2.CenterCrop, v2.ToDtype, v2.Normalize, v2.Grayscale, v2.ToImage, v2.ToPureTensor,
               v2.Identity)


def is_fixed(transform: Callable) -> bool:
    """Whether `transform` does the same to every sample, so that it can run on a whole batch
    at once (data/list_dataset.py's in-memory sets do). A step not in FIXED_STEPS counts as
    random: an augmentation added to `train_transform` is never applied batch-wide by mistake."""
    if isinstance(transform, v2.Compose):
        return all(is_fixed(step) for step in transform.transforms)
    return isinstance(transform, FIXED_STEPS)


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Normalised images as RGB pictures in [0, 1] to draw (grey becomes 3 channels), on the
    CPU: each picture scaled from its own lowest to its highest value, as torchvision's
    make_grid(normalize=True) does, so they show whatever --mean / --std the data had."""
    images = images.detach().float().cpu()
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    pictures = (images - low) / (high - low).clamp(min=1e-8)
    return pictures.expand(-1, 3, -1, -1) if pictures.shape[1] == 1 else pictures


def batch_mix(augment: Augment, num_classes: int) -> v2.Transform | None:
    """--mixup / --cutmix on a whole batch (images and class ids -> mixed images and soft
    targets), or None. With both, each batch gets one of them at random."""
    mixes = []
    if augment.mixup:
        mixes.append(v2.MixUp(alpha=augment.mixup, num_classes=num_classes))
    if augment.cutmix:
        mixes.append(v2.CutMix(alpha=augment.cutmix, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
