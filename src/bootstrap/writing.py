"""Write rendered files atomically and all together.

Every file is first written to a temporary file beside its target (fsync, mode,
owner); only when all of them are staged are they renamed into place, so a failure
leaves no artifact half-written and, short of a failing rename, none written at all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import WriteError
from .rendering import FileArtifact

Action = Literal["create", "update", "unchanged"]


@dataclass(frozen=True)
class Planned:
    """An artifact with what writing it would do."""

    artifact: FileArtifact
    action: Action
    mode: int


def plan(files: Iterable[FileArtifact]) -> list[Planned]:
    """What writing ``files`` would do, without writing anything."""
    planned = []
    for artifact in files:
        try:
            stat = artifact.path.stat()
            current = artifact.path.read_bytes()
        except FileNotFoundError:
            planned.append(Planned(artifact, "create", artifact.mode))
            continue
        except OSError as exc:
            raise WriteError(f"{artifact.path} cannot be read: {exc.strerror}") from None
        mode = stat.st_mode & 0o7777 if artifact.keep_existing_mode else artifact.mode
        same = current == artifact.content and stat.st_mode & 0o7777 == mode
        planned.append(Planned(artifact, "unchanged" if same else "update", mode))
    return planned


def _target(path: Path) -> Path:
    # Write through a symlink (Bitnami links wp-config.php into its volume) instead of
    # replacing the link with a regular file.
    return path.resolve() if path.is_symlink() else path


def _stage(item: Planned, owner: tuple[int, int] | None) -> Path:
    target = _target(item.artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.cloudboot-{os.getpid()}"
    # 0600 from the first byte: the content may hold a password.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, item.artifact.content)
        os.fsync(fd)
        if item.artifact.keep_existing_mode and item.action == "update":
            stat = target.stat()
            os.fchown(fd, stat.st_uid, stat.st_gid)
        elif owner is not None:
            os.fchown(fd, *owner)
        # chmod after chown: chown may clear set-id bits, and the mode must be final.
        os.fchmod(fd, item.mode)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temp


def write(planned: Iterable[Planned], owner: tuple[int, int] | None = None) -> None:
    """Write every planned artifact whose action is not ``unchanged``, all or nothing;
    files cloudboot creates get ``owner`` ``(uid, gid)`` when given."""
    ids = owner
    staged: list[tuple[Path, Path]] = []
    try:
        for item in planned:
            if item.action == "unchanged":
                continue
            try:
                staged.append((_stage(item, ids), _target(item.artifact.path)))
            except OSError as exc:
                raise WriteError(
                    f"{item.artifact.kind} artifact {item.artifact.path} cannot be written: "
                    f"{exc.strerror}"
                ) from None
        for temp, target in staged:
            try:
                temp.replace(target)
            except OSError as exc:
                raise WriteError(f"{target} cannot be replaced: {exc.strerror}") from None
            with contextlib.suppress(OSError):
                dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
                os.fsync(dir_fd)
                os.close(dir_fd)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
