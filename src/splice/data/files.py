"""Reading and writing a user's files without losing bytes or writing through a link.

* :func:`read_regular` reads a regular file; a symbolic link is refused unless the caller asks to
  follow it, and a FIFO, socket or device is refused without blocking on it.
* :func:`write_atomic` writes a temporary file with an unpredictable name beside the target
  (``O_CREAT | O_EXCL | O_NOFOLLOW``, the target's mode, fsync) and renames it into place, so the
  file is either the old or the new bytes, and no pre-existing name (a link a repository
  committed) is ever written through.
* :func:`write_backup` keeps a file's original bytes in ``PATH.orig``; it never overwrites an
  existing backup (git mergetool's own, or an earlier run's): the next free name of
  ``PATH.orig.1``, ``PATH.orig.2``... is used instead, and a link named like a backup is skipped
  as any other existing name.

Every refusal is an :class:`OSError` whose ``strerror`` is one readable line (see
:func:`describe`), so callers catch ``OSError`` and print it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

#: ``O_NOFOLLOW`` and ``O_CLOEXEC`` where the platform has them (both on Linux and macOS).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
#: How many ``PATH.orig.N`` names are tried before giving up on a backup.
MAX_BACKUPS = 1000
#: Bytes looked at for a NUL to call a file binary (git's own heuristic).
BINARY_PROBE = 8000


class SymlinkRefused(OSError):
    """``path`` is a symbolic link and the caller did not choose to follow it."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, "is a symbolic link (not followed)", path)


class NotRegularFile(OSError):
    """``path`` is a directory, FIFO, socket or device, not a regular file."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(errno.EINVAL, f"is {what}, not a regular file", path)


def describe(exc: OSError) -> str:
    """One line for an error from this module or the OS: ``PATH: what went wrong``."""
    what = exc.strerror or str(exc)
    return f"{exc.filename}: {what}" if exc.filename is not None else what


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def resolve_target(path: str, *, follow_links: bool = False) -> str:
    """The file that reading or writing ``path`` should touch.

    ``path`` itself unless it is a symbolic link: then :class:`SymlinkRefused`, or with
    ``follow_links`` the link's final target, resolved explicitly (a dangling link or a loop
    raises :class:`OSError`).
    """
    if not os.path.islink(path):
        return path
    if not follow_links:
        raise SymlinkRefused(path)
    try:
        return os.path.realpath(path, strict=True)
    except OSError as exc:
        raise OSError(exc.errno, "is a symbolic link whose target is missing", path) from None


def read_regular(path: str, *, follow_links: bool = False) -> bytes:
    """The bytes of the regular file ``path``.

    Raises :class:`SymlinkRefused` for a link (unless ``follow_links``), :class:`NotRegularFile`
    for a directory, FIFO, socket or device (never blocking on one), or the OS's own error
    (missing, unreadable).
    """
    target = resolve_target(path, follow_links=follow_links)
    try:
        fd = os.open(target, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since the check above
            raise SymlinkRefused(path) from None
        if exc.errno == errno.EISDIR:
            raise NotRegularFile(path, "a directory") from None
        if exc.errno == errno.ENXIO:  # a socket, or a device without a driver
            raise NotRegularFile(path, _kind(os.stat(target).st_mode)) from None
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, _kind(mode))
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def looks_binary(data: bytes) -> bool:
    """A NUL byte among the first bytes: what git itself takes for a binary file."""
    return b"\0" in data[:BINARY_PROBE]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable, where the platform allows it (best effort)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_exclusive(path: str, mode: int) -> int:
    """Open a new file at ``path``: fails if any entry (a link included) has that name."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)


def write_atomic(path: str, data: bytes, *, follow_links: bool = False) -> str:
    """Replace the content of ``path`` with ``data`` atomically; returns the path written.

    A temporary file with an unpredictable name is created beside the target (``O_EXCL``,
    ``O_NOFOLLOW``), given the target's mode (and owner where allowed), filled, fsynced and
    renamed over the target. A symbolic link ``path`` raises :class:`SymlinkRefused` unless
    ``follow_links``: then its target is resolved explicitly and written, and the link stays a
    link. A directory or other non-regular ``path`` raises :class:`NotRegularFile`. On any error
    the temporary file is removed and ``path`` is left as it was.
    """
    target = resolve_target(path, follow_links=follow_links)
    try:
        st: os.stat_result | None = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, _kind(st.st_mode))
    folder, name = os.path.split(target)
    while True:
        tmp = os.path.join(folder, f".{name}.splice-{secrets.token_hex(8)}.tmp")
        try:
            # a new file gets the usual mode (umask applied); an existing one's mode is set
            # before any byte is written, so a private file never has a readable copy
            fd = _create_exclusive(tmp, 0o600 if st is not None else 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot create a temporary file: {exc.strerror}", path
            ) from None
        break
    try:
        try:
            if st is not None:
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    # where not allowed, the file becomes the writer's, as with any editor
                    with contextlib.suppress(OSError):
                        os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return target


def write_backup(path: str, original: bytes) -> str:
    """Keep ``original`` (the file's bytes before Splice changed them) beside ``path``.

    Written to ``PATH.orig``, or when that name is taken by anything (an earlier backup, git
    mergetool's, a symbolic link) to the first free ``PATH.orig.1``, ``PATH.orig.2``...; an
    existing name is never opened, so a committed link named ``x.py.orig`` cannot redirect the
    write. The backup gets the permission bits of ``path`` (a private file's backup stays
    private). Returns the backup's path; raises :class:`OSError` when no name is free or the
    folder is not writable.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:
        mode = 0o600
    base = f"{path}.orig"
    for n in range(MAX_BACKUPS + 1):
        candidate = base if n == 0 else f"{base}.{n}"
        try:
            fd = _create_exclusive(candidate, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write a backup ({exc.strerror})", path) from None
        try:
            try:
                os.fchmod(fd, mode)
                _write_all(fd, original)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(candidate)
            raise
        return candidate
    raise OSError(errno.EEXIST, f"no free backup name ({base} to {base}.{MAX_BACKUPS})", path)
