"""avatar_core.files.replacing: a reader sees the old file or the whole new one, never half of one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from avatar_core.files import replacing, write_text


def test_the_new_file_appears_whole_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with replacing(target) as tmp:
        tmp.write_bytes(b"new, half")
        assert target.read_bytes() == b"old"  # a reader meanwhile sees the old file
        with tmp.open("ab") as handle:
            handle.write(b" and the rest")
    assert target.read_bytes() == b"new, half and the rest"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_an_error_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "sample.npz"
    write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk full"), replacing(target, ".npz") as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["sample.npz"]


def test_writers_at_once_each_write_their_own_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "stamp"
    names: list[str] = []
    started = threading.Barrier(4)

    def write(text: str) -> None:
        with replacing(target) as tmp:
            names.append(tmp.name)
            tmp.write_text(text)
            started.wait(timeout=10)  # every writer holds its temporary file at the same time

    threads = [threading.Thread(target=write, args=(f"writer {i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(set(names)) == 4 and all(name.startswith(".stamp.") for name in names)
    assert target.read_text() in {f"writer {i}" for i in range(4)}  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["stamp"]
