"""Property test: whatever bytes or lines a list file holds, reading it either works or raises
the project's one clear error (UserError), never anything else."""

import string
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from data.augment import eval_transform
from data.list_dataset import ListDataset, read_list_file
from utils.errors import UserError

TOKENS = st.one_of(
    st.integers(min_value=-5, max_value=10**12).map(str),
    st.text(alphabet=string.ascii_letters + string.digits + "./_-", min_size=1, max_size=12),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=3),  # "٣", "²", ...
    st.text(max_size=8),  # anything at all, line breaks included
)
LINES = st.lists(st.lists(TOKENS, max_size=4).map(" ".join), max_size=12).map("\n".join)


def read_or_refuse(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.txt"
        path.write_bytes(content)
        try:
            entries = read_list_file(path)
            ListDataset(path, eval_transform(8))  # counts classes, checks labels: opens no image
        except UserError as error:
            assert str(error)  # a message, never an empty one
            return
        assert entries and all(isinstance(e.label, (int, Path)) for e in entries)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_user_error(content: bytes) -> None:
    read_or_refuse(content)


@settings(max_examples=300, deadline=None)
@given(LINES)
def test_random_lines_parse_or_raise_user_error(text: str) -> None:
    read_or_refuse(text.encode("utf-8", errors="surrogatepass"))
