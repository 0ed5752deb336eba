"""Writing the files the project writes: atomically, and never through a symlink.

``write_atomic`` puts the bytes in a temporary file in the target's directory
(created ``O_EXCL | O_NOFOLLOW`` with the final mode), fsyncs it, then moves
it into place: ``rename`` to replace, ``link`` to create only if absent.
Neither follows a symlink at the final path (rename replaces the link
itself), and a symlink found there is refused outright, so a planted link
cannot make the server replace or chmod another file.  A crash leaves the
old file or the new one, never a half-written file.

``check_private`` refuses a secret file that group or others may read, as
ssh does for its private keys.
"""

import os
import stat


class UnsafeFile(OSError):
    """A path that must not be written or trusted; the message says why."""


def _refuse_symlink(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFile("{} is a symbolic link; refusing to write through it "
                         "(remove it or give the real path)".format(path))
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile("{} is not a regular file; refusing to replace it".format(path))


def write_atomic(path: str, data: bytes, mode: int = 0o600, replace: bool = True) -> None:
    """Write ``data`` to ``path`` with ``mode``, atomically, never through a symlink.

    ``replace=False`` fails with FileExistsError if ``path`` exists (even as
    a dangling symlink).  Raises UnsafeFile for a symlink or a non-regular
    file at ``path``; other OSErrors as they come.
    """
    _refuse_symlink(path)
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for attempt in range(100):
        temp = os.path.join(directory, ".{}.{}.{}.tmp".format(base, os.getpid(), attempt))
        try:
            fd = os.open(temp, flags, mode)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError("cannot make a temporary file next to {}".format(path))
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never wider than asked
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.rename(temp, path)
        else:
            os.link(temp, path, follow_symlinks=False)
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_private(path: str, fd: int, what: str) -> None:
    """Refuse (UnsafeFile) a secret file that group or others may read or write."""
    mode = os.fstat(fd).st_mode
    if mode & 0o077:
        raise UnsafeFile(
            "{} {} is accessible by others (mode {:04o}); it must be readable by its owner "
            "only: chmod 600 {}".format(what, path, stat.S_IMODE(mode), path))
