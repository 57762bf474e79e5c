"""How long a data set of 100,000 pictures takes to be found, before any is decoded.

Why: a researcher's folder or table of pictures is scanned at every start; that must take
seconds, not minutes. This writes 100,000 empty files (scanning opens none) in 10 class
folders, the same as a CSV table and a list file, and times `--data_type image_folder`,
`csv` and `list` building their training set from disk (`--no-in_memory`), each in a new
process, median of --rounds.

    python bench/scan_speed.py                 # 100,000 files in a temporary folder
    python bench/scan_speed.py --files 20000 --rounds 3
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = {
    "image_folder": "from data.image_folder import build_image_folder as b; from data.augment import Augment; "
                    "d = b(True, Augment(), train_dir='{root}/folder', val_fraction=0.1, in_memory=False)",
    "csv": "from data.csv_table import build_csv as b; from data.augment import Augment; "
           "d = b('{root}/table.csv', True, Augment(), label_columns=('label',), in_memory=False)",
    "list": "from data.list_dataset import build_list_dataset as b; from data.augment import Augment; "
            "d = b('{root}/list.txt', True, Augment(), in_memory=False)",
}


def write_files(root: Path, count: int, classes: int = 10) -> None:
    rows, lines = ["path,label"], []
    for c in range(classes):
        (root / "folder" / f"class_{c}").mkdir(parents=True)
    for i in range(count):
        relative = f"folder/class_{i % classes}/{i:06d}.png"
        (root / relative).touch()
        rows.append(f"{relative},class_{i % classes}")
        lines.append(f"{relative} {i % classes}")
    (root / "table.csv").write_text("\n".join(rows) + "\n")
    (root / "list.txt").write_text("\n".join(lines) + "\n")


def timed(code: str) -> float:
    """Seconds to build the set, in a new process, imports excluded."""
    program = f"import sys, time; sys.path.insert(0, {str(REPO)!r}); import torch, torchvision; " \
              "t = time.perf_counter(); " \
              f"{code}; print(time.perf_counter() - t, len(d))"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        start = time.perf_counter()
        write_files(root, options.files)
        print(f"wrote {options.files:,} files in {time.perf_counter() - start:.1f} s")
        for name, code in BUILD.items():
            times = [timed(code.format(root=root)) for _ in range(options.rounds)]
            print(f"--data_type {name:12s} {options.files:,} pictures: median {statistics.median(times):.2f} s "
                  f"(min {min(times):.2f}, max {max(times):.2f}, {options.rounds} rounds)")


if __name__ == "__main__":
    main()
