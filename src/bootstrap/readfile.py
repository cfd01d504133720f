"""Reading a small input file (a ``*_FILE`` secret, the TOML settings, a
``wp-config.php``) without being turned into a hang or a memory hog by what the path
really is."""

from __future__ import annotations

import os
import stat


class UnreadableFile(Exception):
    """The file cannot be used; ``reason`` is a short phrase without its content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_regular_file(path: str | os.PathLike[str], *, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), at most ``limit``.

    Opened non-blocking, so a FIFO with no writer does not hang the open; anything
    that is not a regular file (a FIFO, a device, a folder, a socket) is refused before
    a byte is read; a file over ``limit`` bytes is refused rather than read whole.
    Raises :class:`UnreadableFile` (``FileNotFoundError`` for a missing file).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableFile(exc.strerror or "cannot be opened") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"not a regular file (a {_kind(info.st_mode)})")
        if info.st_size > limit:
            raise UnreadableFile(f"larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # grew while we read it
                raise UnreadableFile(f"larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(exc.strerror or "cannot be read") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
