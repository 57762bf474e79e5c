"""The train and eval transforms (torchvision.transforms.v2), in one place to edit.

v2 transforms accept an image and a mask together and move both the same way, with
nearest-neighbour resizing for the mask, so the same pipeline serves dense tasks.
"""

import torch
from torchvision.transforms import v2

# Maps [0, 1] to [-1, 1]: good enough for data with no measured statistics. Replace with
# your data set's per-channel mean and std (ImageNet: (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).
MEAN = (0.5,)
STD = (0.5,)


def train_transform(image_size: int) -> v2.Compose:
    """Resize, then light augmentation: random shifts (padded crop) and horizontal flips."""
    return v2.Compose([
        v2.Resize((image_size, image_size), antialias=True),
        v2.RandomCrop(image_size, padding=image_size // 8, padding_mode="edge"),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])


def eval_transform(image_size: int) -> v2.Compose:
    """Resize and normalise only: evaluation must see every sample the same way each time."""
    return v2.Compose([
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])
