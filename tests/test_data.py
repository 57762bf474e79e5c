"""data/: the list datasets, the demo generator, the loaders and the registry."""

from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from data import data_entry, demo_data, list_dataset
from data.augment import Augment, eval_transform, is_fixed, train_transform
from data.data_entry import DATASETS, build_dataset, select_eval_loader, select_train_loader, training_sets
from data.list_dataset import (
    ListDataset,
    MemListDataset,
    build_list_dataset,
    build_seg_list_dataset,
    load_image,
    load_mask,
    read_list_file,
)
from options import build_parser, parse_train_args
from utils.errors import UserError
from utils.signature_flags import flag_parameters


def data_args(demo: Path, *flags: str):
    argv = ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"), "--batch_size", "8",
            "--num_workers", "0", "--seed", "0", *flags]
    return parse_train_args(argv)[0]


def write_png(path: Path, color: tuple[int, int, int] = (255, 0, 0), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 8), color if mode == "RGB" else 1).save(path)
    return path


def test_list_paths_relative_to_the_list_folder_or_absolute(tmp_path: Path) -> None:
    write_png(tmp_path / "imgs" / "a.png")
    absolute = write_png(tmp_path / "elsewhere" / "b.png", (0, 255, 0))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text(f"# a comment\n../imgs/a.png 0\n\n{absolute} 2\n")
    dataset = ListDataset(tmp_path / "lists" / "train.txt", eval_transform(8))
    assert [e.image.resolve() for e in dataset.entries] == [(tmp_path / "imgs" / "a.png").resolve(), absolute]
    assert dataset.num_classes == 3 and dataset.class_names == ["0", "1", "2"]
    item = dataset[1]
    assert item["label"] == 2 and item["path"] == str(absolute)
    assert item["image"].shape == (3, 8, 8) and item["image"][1].min() == 1.0  # green, normalised to 1


def test_label_images_for_dense_tasks(tiny_demo: Path) -> None:
    dataset = ListDataset(tiny_demo / "seg_val.txt", eval_transform(32))
    assert dataset.dense and dataset.class_names[0] == "background" and dataset.num_classes == 6
    item = dataset[3]  # sample 3 is a cross: class id 3, mask value 4
    assert item["label"].shape == (32, 32) and item["label"].dtype == torch.long
    assert set(item["label"].unique().tolist()) == {0, 4}


def test_class_names_come_from_classes_txt(tiny_demo: Path) -> None:
    dataset = ListDataset(tiny_demo / "train.txt", eval_transform(32))
    assert dataset.class_names == list(demo_data.CLASS_NAMES)


@pytest.mark.parametrize("text, message", [
    ("", "holds no samples"),
    ("# only a comment\n", "holds no samples"),
    ("a.png 0\nb.png\n", "Malformed line {list}:2: 'b.png'"),
    ("a.png 0\na.png -1\n", "Negative class id -1 at {list}:2"),
    ("a.png 0\na.png mask.png\n", "mixes class-id labels and label-image paths (first path label at {list}:2)"),
])
def test_malformed_list_files_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    list_path = tmp_path / "train.txt"
    list_path.write_text(text)
    with pytest.raises(UserError) as error:
        read_list_file(list_path)
    assert message.format(list=list_path) in str(error.value)


def test_missing_list_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_list_file(tmp_path / "nope.txt")


def test_label_beyond_classes_txt(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "train.txt").write_text("a.png 1\na.png 2\n")
    with pytest.raises(UserError, match=r"Class id 2 at .*train.txt:2 is outside \[0, 2\)"):
        ListDataset(tmp_path / "train.txt", eval_transform(8))


def test_missing_and_broken_images_name_path_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "train.txt").write_text("gone.png 0\nbroken.png 0\n")
    dataset = ListDataset(tmp_path / "train.txt", eval_transform(8))
    with pytest.raises(UserError, match=r"gone.png \(listed at .*train.txt:1\) does not exist"):
        dataset[0]
    with pytest.raises(UserError, match=r"broken.png \(listed at .*train.txt:2\) cannot be decoded"):
        dataset[1]


@pytest.mark.parametrize("list_name", ["train.txt", "seg_train.txt"])
@pytest.mark.parametrize("image_size", [32, 48, 20])  # the demo's own size, larger, smaller
def test_in_memory_gives_the_same_samples_as_from_disk(tiny_demo: Path, list_name: str, image_size: int) -> None:
    """Held in memory, pictures and masks are resized once; every read, augmented or not, is
    the one a read from disk gives."""
    build = build_seg_list_dataset if list_name.startswith("seg") else build_list_dataset
    augment = Augment(crop_padding=4, hflip=0.5)
    for train in (True, False):
        on_disk = build(str(tiny_demo / list_name), train, augment, image_size)
        in_memory = build(str(tiny_demo / list_name), train, augment, image_size, in_memory=True)
        assert isinstance(in_memory, MemListDataset) and len(in_memory.images) == len(on_disk)
        assert in_memory.images.shape[1:] == (3, image_size, image_size)  # kept at the size trained on
        for index in (0, 7, len(on_disk) - 1):
            torch.manual_seed(index)
            expected = on_disk[index]
            torch.manual_seed(index)
            got = in_memory[index]
            assert torch.equal(expected["image"], got["image"])
            assert torch.equal(torch.as_tensor(expected["label"]), torch.as_tensor(got["label"]))


@pytest.mark.parametrize("list_name", ["train.txt", "seg_train.txt"])
@pytest.mark.parametrize("flags", [(), ("--folds", "3"), ("--overfit_batches", "2"), ("--hflip", "0.5")])
def test_in_memory_batches_equal_the_batches_read_from_disk(tiny_demo: Path, list_name: str, flags: tuple) -> None:
    """Without augmentation an in-memory set is read a batch at a time (__getitems__, through
    the fold and seeding views); with it, sample by sample. Either way the loaders give the
    batches that reading each sample from disk gives."""
    kind = ["--data_type", "seg_list", "--model_type", "unet"] if list_name.startswith("seg") else []
    val_name = list_name.replace("train", "val")
    lists = ["--train_list", str(tiny_demo / list_name), "--val_list", str(tiny_demo / val_name)]
    batches = {}
    for memory in (("--no-in_memory",), ("--in_memory",)):
        args = data_args(tiny_demo, *kind, *lists, *flags, *memory)
        train_set, val_set = training_sets(args)
        train_loader, val_loader = select_train_loader(args, train_set), select_eval_loader(args, val_set)
        train_loader.sampler.set_epoch(2)
        batches[memory] = list(train_loader) + list(val_loader)
    assert training_sets(args)[0].reads_batches is ("--hflip" not in flags)  # the in-memory training set
    assert len(batches[("--no-in_memory",)]) == len(batches[("--in_memory",)]) > 2
    for disk, memory in zip(batches[("--no-in_memory",)], batches[("--in_memory",)]):
        assert disk["path"] == memory["path"]
        assert torch.equal(disk["image"], memory["image"]) and torch.equal(disk["label"], memory["label"])
        assert disk["label"].dtype == memory["label"].dtype == torch.long


@pytest.mark.parametrize(("flags", "workers"), [
    (("--no-in_memory",), 2), ((), 0), (("--hflip", "0.5"), 2), (("--num_workers", "1"), 1),
    (("--no-in_memory", "--num_workers", "0"), 0)])
def test_loader_workers_default_to_none_for_sets_read_a_batch_at_a_time(tiny_demo: Path, flags: tuple,
                                                                        workers: int) -> None:
    args = data_args(tiny_demo, *flags)
    args.num_workers = None if "--num_workers" not in flags else args.num_workers  # data_args passes 0
    assert select_train_loader(args, build_dataset(args, train=True)).num_workers == workers
    eval_workers = workers if "--num_workers" in flags else (2 if "--no-in_memory" in flags else 0)
    assert select_eval_loader(args, build_dataset(args, train=False)).num_workers == eval_workers
    gpu_workers = eval_workers if "--num_workers" in flags else 2  # a GPU machine: workers read ahead
    with patch.object(torch.cuda, "is_available", lambda: True):
        assert select_eval_loader(args, build_dataset(args, train=False)).num_workers == gpu_workers


@pytest.mark.parametrize("list_name", ["train.txt", "seg_train.txt"])
def test_in_memory_beyond_what_the_machine_can_allocate_is_a_clear_error(tiny_demo: Path, list_name: str,
                                                                         monkeypatch) -> None:
    monkeypatch.setattr(list_dataset, "MAX_IMAGE_SIZE", 10**7)  # past the plausibility check, to the allocator
    build = build_seg_list_dataset if list_name.startswith("seg") else build_list_dataset
    with pytest.raises(UserError, match=r"--in_memory: the 60 pictures of .* take .* GiB at --image_size 1000000, "
                                        r"more than this machine can allocate; use --no-in_memory"):
        build(str(tiny_demo / list_name), True, Augment(), image_size=1_000_000, in_memory=True)
    assert type(build(str(tiny_demo / list_name), True, Augment(), image_size=1_000_000)) is ListDataset  # unset


def test_only_transforms_that_draw_nothing_random_are_applied_to_a_batch_at_once() -> None:
    assert is_fixed(train_transform(Augment(), 32)) and is_fixed(eval_transform(32, resize=False))
    assert not is_fixed(train_transform(Augment(hflip=0.5), 32))
    assert not is_fixed(v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.ColorJitter(0.4)]))  # added by hand
    assert is_fixed(train_transform(Augment(mixup=0.2), 32))  # mixup mixes whole batches later, in the Trainer


def test_demo_data_is_deterministic_and_balanced(tmp_path: Path, tiny_demo: Path) -> None:
    demo_data.generate_demo_data(tmp_path / "again", num_train=60, num_val=30)
    for name in ("train.txt", "images/train/00017.png", "masks/val/00029.png"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_demo / name).read_bytes()
    labels = [entry.label for entry in read_list_file(tiny_demo / "train.txt")]
    assert [labels.count(k) for k in range(5)] == [12] * 5


def test_demo_masks_cover_exactly_the_shape(tiny_demo: Path) -> None:
    for index in range(5):
        image = load_image(tiny_demo / f"images/val/{index:05d}.png", "test").flatten(1).T  # (pixels, 3)
        mask = load_mask(tiny_demo / f"masks/val/{index:05d}.png", "test").flatten()
        shape_colors = image[mask == index + 1].unique(dim=0)
        assert len(shape_colors) == 1  # every masked pixel has the shape's one colour


def test_demo_data_is_generated_on_first_use_only_for_demo_lists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    demo_data.ensure_demo_data("my_data/train.txt")
    assert not (tmp_path / "my_data").exists()
    calls = []
    monkeypatch.setattr(demo_data, "generate_demo_data", calls.append)  # the real one: see test_scripts
    demo_data.ensure_demo_data("data/demo/train.txt")
    assert calls == [demo_data.DEMO_ROOT]


def test_train_order_depends_only_on_seed_and_epoch(tiny_demo: Path) -> None:
    def order(seed: int, epoch: int) -> list[str]:
        args = data_args(tiny_demo, "--seed", str(seed))
        loader = select_train_loader(args, build_dataset(args, train=True))
        loader.sampler.set_epoch(epoch)
        return [path for batch in loader for path in batch["path"]]

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)
    # 60 samples in batches of 8: 7 full batches, each sample at most once; the 4 left over
    # (dropped, so no batch is smaller than the rest) differ from epoch to epoch.
    assert len(order(0, 1)) == len(set(order(0, 1))) == 56
    assert set(order(0, 1)) != set(order(0, 2))


def test_eval_loader_keeps_list_order(tiny_demo: Path) -> None:
    args = data_args(tiny_demo)
    loader = select_eval_loader(args, build_dataset(args, train=False))
    paths = [path for batch in loader for path in batch["path"]]
    assert paths == [str(entry.image) for entry in read_list_file(tiny_demo / "val.txt")]


def test_in_memory_is_a_flag_of_the_list_data_sets_and_by_default_holds_small_sets(tiny_demo: Path,
                                                                                   monkeypatch) -> None:
    assert isinstance(build_dataset(data_args(tiny_demo, "--in_memory"), train=False), MemListDataset)
    assert type(build_dataset(data_args(tiny_demo, "--no-in_memory"), train=False)) is ListDataset
    assert isinstance(build_dataset(data_args(tiny_demo), train=True), MemListDataset)  # 60 pictures: 0.2 MB
    for debug in (["--fast_dev_run"], ["--limit_train_batches", "2"], ["--overfit_batches", "1"]):  # a few batches
        assert type(build_dataset(data_args(tiny_demo, *debug), train=True)) is ListDataset
        assert isinstance(build_dataset(data_args(tiny_demo, *debug, "--in_memory"), train=True), MemListDataset)
    monkeypatch.setattr(list_dataset, "IN_MEMORY_LIMIT", 60 * 3 * 32**2 - 1)  # one byte too small
    assert type(build_dataset(data_args(tiny_demo), train=True)) is ListDataset
    assert isinstance(build_dataset(data_args(tiny_demo), train=False), MemListDataset)  # 30 pictures fit


@pytest.mark.parametrize("data_type", list(DATASETS))
def test_every_builder_takes_only_what_it_uses_and_its_parameters_are_flags(data_type: str) -> None:
    parser = build_parser("train.py", data_type=data_type)  # raises if a parameter cannot be a flag or clashes
    own = {a.dest for g in parser._action_groups if g.title == f"data set {data_type}" for a in g._group_actions}
    builder = {p.name for p in flag_parameters(DATASETS[data_type], ())}
    assert own == builder - set(data_entry.SUPPLIED), own  # what the loaders hand over is no flag


def test_folds_split_the_training_list_stratified_and_the_same_for_every_seed(tiny_demo: Path) -> None:
    from data.data_entry import training_sets

    folds = [training_sets(data_args(tiny_demo, "--folds", "3", "--fold", str(i), "--seed", str(i))) for i in range(3)]
    validation = [set(val.indices) for _, val in folds]
    assert [len(v) for v in validation] == [20, 20, 20] and set.union(*validation) == set(range(60))
    for (train, val), held_out in zip(folds, validation):
        assert set(train.indices) == set(range(60)) - held_out
        labels = [val.dataset.entries[i].label for i in val.indices]
        assert [labels.count(k) for k in range(5)] == [4] * 5  # every class equally in every fold
    again = training_sets(data_args(tiny_demo, "--folds", "3", "--fold", "1", "--seed", "7"))
    assert again[1].indices == folds[1][1].indices  # folds do not depend on --seed
