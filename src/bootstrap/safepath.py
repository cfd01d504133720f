"""Reaching a file cloudboot reads or writes without being steered by someone else.

cloudboot writes passwords, often as root, sometimes into folders other users or
processes can write (a shared volume, a sticky ``/tmp``, a group-writable web root).
Every artifact path is walked one component at a time from ``/`` with ``openat``, never
following a link on the way by accident, and each step is judged (README, "Writing"):

- a folder must belong to a *trusted* user (root, the user cloudboot runs as, or the
  configured owner) and must not be writable by others, unless it is sticky (others
  may add names there, but cannot remove or replace ours) or only its group may write
  and that group is trusted too;
- a link (on the way, or the artifact itself) is followed only when a trusted user owns
  it, in a folder that passed: nobody else could have planted or swapped it. A link to
  nothing, or to a folder that does not exist, is refused: nothing is created behind it;
- the artifact, when it exists, must be a regular file (never a FIFO, a device, a
  folder) that a trusted user owns.

Everything is refused with :class:`UnsafePath` (the caller's exit code: 73), naming the
path and why, never a content.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LINKS = 40


class UnsafePath(Exception):
    """A path cloudboot will not read or write through; the message says why."""


@dataclass(frozen=True)
class Trust:
    """The users and groups whose files and folders cloudboot relies on."""

    uids: frozenset[int]
    gids: frozenset[int]


def trust_for(owner: tuple[int, int] | None) -> Trust:
    """Root, the user cloudboot runs as, and the configured owner (with their groups)."""
    uids, gids = {0, os.geteuid()}, {0, os.getegid()}
    if owner is not None:
        uids.add(owner[0])
        gids.add(owner[1])
    return Trust(frozenset(uids), frozenset(gids))


@dataclass
class Place:
    """Where an artifact is, reached safely: an open descriptor of its folder (``None``
    when folders on the way are still to be created), its name there, its real path,
    and the regular file that is there now (``None`` when there is none)."""

    folder: int | None
    name: str
    real: Path
    existing: os.stat_result | None
    missing_folders: tuple[Path, ...] = ()


class _Follow(Exception):
    """A trusted link was met: walk again from where it points."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a link"),
    ):
        if test(mode):
            return name
    return "a special file"


def _check_folder(info: os.stat_result, path: Path, trust: Trust) -> None:
    if info.st_uid not in trust.uids:
        raise UnsafePath(
            f"the folder {path} belongs to uid {info.st_uid}, whom cloudboot does not trust "
            "(set CLOUDBOOT_OWNER to that user if the files are theirs)"
        )
    sticky = bool(info.st_mode & stat.S_ISVTX)
    if info.st_mode & stat.S_IWOTH and not sticky:
        raise UnsafePath(f"the folder {path} is writable by anyone (and not sticky)")
    if info.st_mode & stat.S_IWGRP and not sticky and info.st_gid not in trust.gids:
        raise UnsafePath(
            f"the folder {path} is writable by group {info.st_gid}, whose members could "
            "replace what cloudboot writes"
        )


def _check_link(info: os.stat_result, path: Path, trust: Trust) -> None:
    if info.st_uid not in trust.uids:
        raise UnsafePath(
            f"{path} is a link that uid {info.st_uid} owns: another user could have "
            "planted it, so cloudboot does not follow it"
        )


def _check_file(info: os.stat_result, path: Path, trust: Trust) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(f"{path} is {_kind(info.st_mode)}, not a regular file")
    if info.st_uid not in trust.uids:
        raise UnsafePath(
            f"{path} belongs to uid {info.st_uid}, whom cloudboot does not trust: it may "
            "have been planted (set CLOUDBOOT_OWNER to that user if it is theirs)"
        )


def _lstat(name: str, folder: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _link_target(name: str, folder: int, at: Path, rest: tuple[str, ...]) -> Path:
    target = os.readlink(name, dir_fd=folder)
    return Path(os.path.normpath(at / target)).joinpath(*rest)


def locate(
    path: Path,
    trust: Trust,
    *,
    create: bool = False,
    owner: tuple[int, int] | None = None,
) -> Place:
    """The :class:`Place` of ``path``; raises :class:`UnsafePath`.

    ``create`` makes the missing folders on the way (mode 0755, given to ``owner``);
    without it they are listed in :attr:`Place.missing_folders`. The caller closes
    :attr:`Place.folder` (:func:`closing`).
    """
    path = Path(os.path.abspath(path))
    followed = False
    for _ in range(MAX_LINKS):
        try:
            return _walk(path, trust, create=create and not followed, owner=owner)
        except _Follow as link:
            path, followed = link.path, True
    raise UnsafePath(f"{path}: more than {MAX_LINKS} links on the way")


def _walk(path: Path, trust: Trust, *, create: bool, owner: tuple[int, int] | None) -> Place:
    walker = _Walker(path, trust, create=create, owner=owner)
    try:
        return walker.walk()
    except BaseException:
        walker.close()
        raise


class _Walker:
    """One walk from ``/`` to ``path``; :attr:`folder` is the descriptor it holds."""

    def __init__(
        self, path: Path, trust: Trust, *, create: bool, owner: tuple[int, int] | None
    ) -> None:
        self.path, self.trust, self.create, self.owner = path, trust, create, owner
        self.folder = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.at = Path("/")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.folder)

    def walk(self) -> Place:
        parts = self.path.parts
        _check_folder(os.fstat(self.folder), self.at, self.trust)
        for index, name in enumerate(parts[1:-1], start=1):
            if not self._enter(name, parts[index + 1 :]):
                missing = tuple(Path(*parts[: j + 1]) for j in range(index, len(parts) - 1))
                self.close()
                return Place(None, parts[-1], self.path, None, missing)
        name = parts[-1]
        info = _lstat(name, self.folder)
        if info is not None and stat.S_ISLNK(info.st_mode):
            _check_link(info, self.at / name, self.trust)
            target = _link_target(name, self.folder, self.at, ())
            if not target.exists():
                raise UnsafePath(f"{self.at / name} is a link to nothing ({target})")
            raise _Follow(target)
        if info is not None:
            _check_file(info, self.at / name, self.trust)
        return Place(self.folder, name, self.at / name, info)

    def _enter(self, name: str, rest: tuple[str, ...]) -> bool:
        """Step into the folder ``name``; false when it does not exist (and is not made)."""
        info = _lstat(name, self.folder)
        if info is None and self.create:
            os.mkdir(name, 0o755, dir_fd=self.folder)
            if self.owner is not None:
                os.chown(name, *self.owner, dir_fd=self.folder, follow_symlinks=False)
            info = _lstat(name, self.folder)
        if info is None:
            return False
        if stat.S_ISLNK(info.st_mode):
            _check_link(info, self.at / name, self.trust)
            raise _Follow(_link_target(name, self.folder, self.at, rest))
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePath(f"{self.at / name} is {_kind(info.st_mode)}, not a folder")
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        inner = os.open(name, flags, dir_fd=self.folder)
        os.close(self.folder)
        self.folder, self.at = inner, self.at / name
        _check_folder(os.fstat(self.folder), self.at, self.trust)
        return True


def release(place: Place) -> None:
    """Close the folder descriptor of ``place`` (once)."""
    if place.folder is not None:
        with contextlib.suppress(OSError):
            os.close(place.folder)
        place.folder = None


@contextlib.contextmanager
def closing(place: Place) -> Iterator[Place]:
    """``place``, its folder descriptor closed afterwards."""
    try:
        yield place
    finally:
        release(place)


def read_existing(place: Place, *, limit: int) -> bytes | None:
    """The bytes of the file at ``place`` (the very file :func:`locate` judged), or
    ``None`` when there is none; :class:`UnsafePath` if it changed meanwhile or is
    larger than ``limit``."""
    if place.folder is None or place.existing is None:
        return None
    try:
        fd = os.open(
            place.name,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            dir_fd=place.folder,
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafePath(f"{place.real} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (place.existing.st_dev, place.existing.st_ino):
            raise UnsafePath(f"{place.real} was replaced while cloudboot looked at it")
        if info.st_size > limit:
            raise UnsafePath(f"{place.real} is larger than {limit} bytes")
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
            if len(data) > limit:
                raise UnsafePath(f"{place.real} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)


def read_trusted(path: Path, trust: Trust, *, limit: int) -> bytes | None:
    """The bytes of ``path`` reached by the rules above, ``None`` when it does not exist."""
    with closing(locate(path, trust)) as place:
        return read_existing(place, limit=limit)
