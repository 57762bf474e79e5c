"""k-fold cross-validation on one list: `--folds K --fold i` trains on K-1 folds of
--train_list and validates on fold i (--val_list is then not used).

The folds depend on the list alone (a fixed seed, not --seed), so the same fold is the same
samples on every machine and for every --seed: seeds and folds can be crossed in a sweep.
Class-id lists are stratified: each class is dealt round-robin over the folds, so every
fold holds about the same share of every class.
"""

import random
from collections import defaultdict

from utils.errors import UserError

FOLD_SEED = 0


def fold_indices(labels: list[object], folds: int, fold: int) -> tuple[list[int], list[int]]:
    """(training indices, validation indices) of fold `fold` of `folds`. `labels[i]` is sample
    i's class id, or None where there is no class to stratify by (masks)."""
    if not 2 <= folds <= len(labels):
        raise UserError(f"--folds {folds} must be from 2 to the {len(labels)} samples of --train_list.")
    if not 0 <= fold < folds:
        raise UserError(f"--fold {fold} must be from 0 to {folds - 1} (--folds {folds}).")
    rng = random.Random(FOLD_SEED)
    by_class: dict[object, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label if isinstance(label, int) else None].append(index)
    assigned, dealt = {}, 0
    for label in sorted(by_class, key=str):  # a fixed order of classes
        members = by_class[label]
        rng.shuffle(members)
        for index in members:  # dealing continues across classes: folds stay equal in size
            assigned[index] = dealt % folds
            dealt += 1
    validation = [i for i in range(len(labels)) if assigned[i] == fold]
    training = [i for i in range(len(labels)) if assigned[i] != fold]
    return training, validation
