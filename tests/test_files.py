"""``splice.data.files``: atomic writes, backups and reads that never follow a link unasked."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from splice.data.files import (
    NotRegularFile,
    SymlinkRefused,
    describe,
    looks_binary,
    read_regular,
    write_atomic,
    write_backup,
)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the working folder that hostile links point to."""
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(b"precious\n")
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_write_atomic_replaces_content_and_keeps_the_mode(work: Path) -> None:
    target = work / "run.sh"
    target.write_bytes(b"old\n")
    target.chmod(0o750)
    assert write_atomic(str(target), b"new\n" * 300_000) == str(target)
    assert target.read_bytes() == b"new\n" * 300_000
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert sorted(p.name for p in work.iterdir()) == ["run.sh"]  # no temporary file left


def test_write_atomic_creates_a_missing_file_with_the_usual_mode(work: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(str(work / "new.txt"), b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((work / "new.txt").stat().st_mode) == 0o644


def test_write_atomic_refuses_a_symlink(work: Path, victim: Path) -> None:
    link = work / "f.py"
    link.symlink_to(victim)
    with pytest.raises(SymlinkRefused) as info:
        write_atomic(str(link), b"evil\n")
    assert describe(info.value) == f"{link}: is a symbolic link (not followed)"
    assert victim.read_bytes() == b"precious\n"
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert sorted(p.name for p in work.iterdir()) == ["f.py"]


def test_write_atomic_follows_a_link_only_when_asked(work: Path) -> None:
    (work / "real").mkdir()
    real = work / "real" / "f.py"
    real.write_bytes(b"old\n")
    real.chmod(0o600)
    link = work / "f.py"
    link.symlink_to("real/f.py")
    assert write_atomic(str(link), b"new\n", follow_links=True) == str(real)
    assert os.readlink(link) == "real/f.py"
    assert real.read_bytes() == b"new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


def test_write_atomic_refuses_a_dangling_link_even_when_following(work: Path) -> None:
    link = work / "f.py"
    link.symlink_to(work / "gone.py")
    with pytest.raises(OSError, match="target is missing"):
        write_atomic(str(link), b"x", follow_links=True)
    assert not (work / "gone.py").exists()


def test_write_atomic_ignores_a_link_at_the_old_temporary_name(work: Path, victim: Path) -> None:
    target = work / "f.py"
    target.write_bytes(b"old\n")
    (work / "f.py.splice-tmp").symlink_to(victim)
    write_atomic(str(target), b"new\n")
    assert victim.read_bytes() == b"precious\n"
    assert target.read_bytes() == b"new\n" and not target.is_symlink()


def test_write_atomic_temporary_names_are_unpredictable(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers in one folder never share a temporary file."""
    names: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        names.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    target = work / "f.py"
    threads = [
        threading.Thread(target=write_atomic, args=(str(target), b"%d\n" % i)) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8 and all(n.startswith(".f.py.splice-") for n in names)
    assert target.read_bytes() in {b"%d\n" % i for i in range(8)}


def test_write_atomic_onto_a_directory_fails_cleanly(work: Path) -> None:
    (work / "pkg").mkdir()
    with pytest.raises(NotRegularFile, match="is a directory"):
        write_atomic(str(work / "pkg"), b"x")
    assert sorted(p.name for p in work.iterdir()) == ["pkg"]


def test_write_backup_never_overwrites(work: Path) -> None:
    target = work / "f.py"
    target.write_bytes(b"marked\n")
    target.chmod(0o640)
    (work / "f.py.orig").write_bytes(b"mergetool's\n")
    first = write_backup(str(target), b"marked\n")
    second = write_backup(str(target), b"after the first run\n")
    assert (first, second) == (f"{target}.orig.1", f"{target}.orig.2")
    assert (work / "f.py.orig").read_bytes() == b"mergetool's\n"
    assert (work / "f.py.orig.1").read_bytes() == b"marked\n"
    assert (work / "f.py.orig.2").read_bytes() == b"after the first run\n"
    assert stat.S_IMODE((work / "f.py.orig.1").stat().st_mode) == 0o640


def test_write_backup_skips_a_link_named_like_a_backup(work: Path, victim: Path) -> None:
    target = work / "f.py"
    target.write_bytes(b"marked\n")
    (work / "f.py.orig").symlink_to(victim)
    (work / "f.py.orig.1").symlink_to(work / "dangling")  # O_CREAT alone would create it
    assert write_backup(str(target), b"marked\n") == f"{target}.orig.2"
    assert victim.read_bytes() == b"precious\n"
    assert not (work / "dangling").exists()
    assert (work / "f.py.orig.2").read_bytes() == b"marked\n"


def test_read_regular_refuses_links_and_special_files(work: Path, victim: Path) -> None:
    (work / "link").symlink_to(victim)
    with pytest.raises(SymlinkRefused):
        read_regular(str(work / "link"))
    assert read_regular(str(work / "link"), follow_links=True) == b"precious\n"
    os.mkfifo(work / "pipe")  # a plain open() for reading would block here forever
    with pytest.raises(NotRegularFile, match="is a FIFO"):
        read_regular(str(work / "pipe"))
    (work / "dir").mkdir()
    with pytest.raises(NotRegularFile, match="is a directory"):
        read_regular(str(work / "dir"))
    with pytest.raises(FileNotFoundError):
        read_regular(str(work / "missing"))


def test_looks_binary_is_gits_rule() -> None:
    assert looks_binary(b"GIF89a\x00")
    assert not looks_binary("héllo\n".encode())
    assert not looks_binary(b"x" * 8000 + b"\x00")
