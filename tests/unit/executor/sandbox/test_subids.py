from pathlib import Path

import pytest

from executor.errors import SandboxError
from executor.sandbox.subids import IdRange, find_range

GOOD = "# admins\nroot:10:5\n\nalice:100000:65536\n1001:300000:10\nalice:900000:1\n"


@pytest.mark.parametrize(
    ("uid", "name", "found"),
    [
        (1000, "alice", IdRange(100000, 65536)),  # the first of two lines counts
        (1001, "bob", IdRange(300000, 10)),  # by number
        (1002, None, None),  # no passwd name, no line for the number
        (1003, "carol", None),
    ],
)
def test_find_range(tmp_path: Path, uid: int, name: str | None, found: IdRange | None) -> None:
    path = tmp_path / "subuid"
    path.write_text(GOOD)
    assert find_range(path, uid=uid, name=name) == found


def test_no_file_gives_no_range(tmp_path: Path) -> None:
    assert find_range(tmp_path / "absent", uid=1000, name="alice") is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("alice:abc:65536", "start 'abc' is not a number"),
        ("alice:100000:-1", "count '-1' is not a number"),
        ("alice:100000:0", "count is 0"),
        ("alice:100000", "'alice:100000' is not owner:start:count"),
        ("alice 100000 65536", "'alice 100000 65536' is not owner:start:count"),
        ("alice:1:2:3", "'alice:1:2:3' is not owner:start:count"),
        (":100000:65536", "names no owner"),
    ],
)
def test_a_malformed_line_is_named_with_its_number(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "subuid"
    path.write_text(f"root:10:5\n{line}\nalice:100000:65536\n")
    with pytest.raises(SandboxError) as caught:
        find_range(path, uid=1000, name="alice")
    assert str(caught.value).startswith(f"{path}:2: ")
    assert problem in str(caught.value)
