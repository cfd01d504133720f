"""Write rendered files atomically and all together, complete or not at all.

Every file is reached by :mod:`bootstrap.safepath`'s rules (no planted link, folder or
file is written through), then written to a temporary file beside its target: a name
nobody can predict, created exclusively (``O_EXCL``: never a file, FIFO or link someone
made first), given to its owner before a byte of it is written, written to the last
byte (a short write, a full disk or a quota is an error, 73), fsync'd, given its mode.
Only when all of them are staged are they renamed into place, so a failure leaves every
previous file byte for byte as it was and, short of a failing rename, none written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import WriteError
from .rendering import FileArtifact
from .safepath import (
    Place,
    Trust,
    UnsafePath,
    closing,
    locate,
    read_existing,
    release,
    trust_for,
)

Action = Literal["create", "update", "unchanged"]

MAX_EXISTING_BYTES = 1 << 20
"""A file cloudboot replaces is read to compare it; none of them is larger than this."""


@dataclass(frozen=True)
class Planned:
    """An artifact with what writing it would do: its mode, and the owner an existing
    file keeps (``wp-config.php``)."""

    artifact: FileArtifact
    action: Action
    mode: int
    keep_owner: tuple[int, int] | None = None


def plan(files: Iterable[FileArtifact], owner: tuple[int, int] | None = None) -> list[Planned]:
    """What writing ``files`` would do, without writing anything; raises
    :class:`WriteError` (73) for a path that cannot be written safely."""
    trust = trust_for(owner)
    return [_plan_one(artifact, trust) for artifact in files]


def _plan_one(artifact: FileArtifact, trust: Trust) -> Planned:
    try:
        with closing(locate(artifact.path, trust)) as place:
            current = read_existing(place, limit=MAX_EXISTING_BYTES)
            existing = place.existing
    except UnsafePath as exc:
        raise WriteError(f"{artifact.kind} artifact {artifact.path}: {exc}") from None
    except OSError as exc:
        raise WriteError(f"{artifact.path} cannot be read: {exc.strerror}") from None
    if existing is None or current is None:
        return Planned(artifact, "create", artifact.mode)
    keep = artifact.keep_existing_mode
    mode = existing.st_mode & 0o7777 if keep else artifact.mode
    same = current == artifact.content and existing.st_mode & 0o7777 == mode
    owner = (existing.st_uid, existing.st_gid) if keep else None
    return Planned(artifact, "unchanged" if same else "update", mode, owner)


@dataclass
class _Staged:
    place: Place
    temp: str


def _create_temp(place: Place) -> tuple[int, str]:
    """A new, empty, 0600 file beside the target, under a name nobody can predict."""
    assert place.folder is not None  # noqa: S101 - located with create=True
    for _ in range(8):
        name = f".{place.name}.cloudboot-{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(name, flags, 0o600, dir_fd=place.folder), name
        except FileExistsError:
            continue  # somebody guessed a random name: take another
    raise OSError(errno.EEXIST, "no free temporary name")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # never for a regular file; an error rather than a loop
            raise OSError(errno.EIO, "the write made no progress")
        view = view[written:]


def _stage(item: Planned, owner: tuple[int, int] | None, trust: Trust) -> _Staged:
    place = locate(item.artifact.path, trust, create=True, owner=owner)
    try:
        fd, temp = _create_temp(place)
    except BaseException:
        release(place)
        raise
    staged = _Staged(place, temp)
    try:
        chown = item.keep_owner or owner
        if chown is not None and os.geteuid() == 0:
            # Before any byte of a secret: the file is the owner's from its first byte.
            os.fchown(fd, *chown)
        _write_all(fd, item.artifact.content)
        os.fsync(fd)
        # chmod after chown: chown may clear set-id bits, and the mode must be final.
        os.fchmod(fd, item.mode)
    except BaseException:
        os.close(fd)
        _discard(staged)
        raise
    os.close(fd)
    return staged


def _discard(staged: _Staged) -> None:
    with contextlib.suppress(OSError):
        os.unlink(staged.temp, dir_fd=staged.place.folder)
    release(staged.place)


def write(planned: Iterable[Planned], owner: tuple[int, int] | None = None) -> None:
    """Write every planned artifact whose action is not ``unchanged``, all or nothing;
    files cloudboot creates get ``owner`` ``(uid, gid)`` when given. Raises
    :class:`WriteError` (73); every previous file is then left as it was."""
    trust = trust_for(owner)
    staged: list[_Staged] = []
    try:
        for item in planned:
            if item.action == "unchanged":
                continue
            try:
                staged.append(_stage(item, owner, trust))
            except UnsafePath as exc:
                raise WriteError(
                    f"{item.artifact.kind} artifact {item.artifact.path}: {exc}"
                ) from None
            except OSError as exc:
                raise WriteError(
                    f"{item.artifact.kind} artifact {item.artifact.path} cannot be written: "
                    f"{exc.strerror}"
                ) from None
        for entry in staged:
            folder = entry.place.folder
            try:
                os.rename(entry.temp, entry.place.name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError as exc:
                raise WriteError(f"{entry.place.real} cannot be replaced: {exc.strerror}") from None
            with contextlib.suppress(OSError):
                os.fsync(folder)  # type: ignore[arg-type]
    finally:
        for entry in staged:
            _discard(entry)
