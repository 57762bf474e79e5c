"""Data sets seen through another: a part of one (a fold, the batches of --overfit_batches)
or one read with per-sample seeds. They pass on the attributes the Trainer sizes the model
and picks the task from: num_classes, in_channels, class_names and task; and batch reads
(`__getitems__`, which the DataLoader calls when a data set has it)."""

from collections.abc import Iterable

from torch.utils.data import Dataset


class DatasetView(Dataset):
    """A data set that reads `self.dataset` and shows its attributes as its own."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def in_channels(self) -> int:
        return self.dataset.in_channels

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def task(self) -> str:
        return self.dataset.task

    @property
    def reads_batches(self) -> bool:
        """Whether `__getitems__` reads a whole batch at once (see MemListDataset); unknown: no."""
        return getattr(self.dataset, "reads_batches", False)


class Part(DatasetView):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset: Dataset, indices: Iterable[int]) -> None:
        super().__init__(dataset)
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.indices[index]]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch, read at once where the data set can (as torch's Subset does)."""
        if self.reads_batches:
            return self.dataset.__getitems__([self.indices[index] for index in indices])
        return [self.dataset[self.indices[index]] for index in indices]
