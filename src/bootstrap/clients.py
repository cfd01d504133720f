"""``cloudboot psql`` and ``cloudboot mysql``: exec the real SQL client, already connected.

The client reads its connection settings, password included, from anonymous in-memory
files (``memfd_create``, mode 0600) that cloudboot hands over as inherited file
descriptors and names as ``/proc/self/fd/N``:

- ``psql``: a service file (``PGSERVICEFILE``, ``PGSERVICE``) whose ``passfile`` is a
  second such file holding the ``.pgpass`` line;
- ``mariadb``/``mysql``: ``--defaults-file=/proc/self/fd/N`` as the first argument.

Why not files on disk: cloudboot execs the client (it takes cloudboot's PID, signals
and exit code, nothing of cloudboot stays behind), so nothing would be left to delete
a temporary file afterwards. An anonymous file has no name in any directory, is
readable only through the descriptor (``/proc/PID/fd`` is open to the same user alone,
as a 0600 file would be), can be reopened (psql re-reads both files on ``\\c``), and
disappears with the client's last descriptor, even when the client is killed. It also
works on a read-only root file system. The password is never in an argv or in the
client's environment: the variables the credentials came from are removed from it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from . import events
from .config import load
from .engines import ClientSpec, placeholder
from .errors import ProgramError, UsageError
from .execute import EXIT_NOT_FOUND, exec_program
from .logs import get_logger

# What `env`, `timeout` and the shell answer when a command cannot be found or run: a
# script can tell a missing client from cloudboot's own sysexits codes.
EX_OSERR = 71

# What the client is given of cloudboot's environment: only these names (and the
# LC_* and PSQL_* families), never a variable that could hold a credential.
CLIENT_VARIABLES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "HOSTNAME", "TZ", "TMPDIR",
        "LANG", "LANGUAGE", "TERM", "TERMINFO", "COLORTERM", "COLUMNS", "LINES",
        "PAGER", "LESS", "EDITOR", "VISUAL",
        "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
        "PSQLRC", "PGTZ", "PGDATESTYLE", "PGCLIENTENCODING", "PGAPPNAME",
        "MYSQL_HISTFILE", "MYSQL_PS1",
    }
)  # fmt: skip
CLIENT_PREFIXES = ("LC_", "PSQL_")


def exec_client(command: str, args: Sequence[str], environ: Mapping[str, str]) -> NoReturn:
    """Replace this process with ``command``'s client (``psql`` or ``mysql``),
    connected; never returns.

    Raises :class:`~bootstrap.errors.ConfigError` (78), :class:`UsageError` (64) for a
    client of the other engine, or :class:`ProgramError` (127 not installed, 126 cannot
    run, 71 no anonymous files on this system).
    """
    config = load(environ)
    engine = config.engine
    if engine.client.command != command:
        raise UsageError(
            f"the database in {config.source.label} is {engine.title}: "
            f"use 'cloudboot {engine.client.command}'"
        )
    path = find_client(engine.client, environ)
    launch = engine.client_launch(config.target, service_name=config.settings.pg_service_name)
    fds: list[int] = []
    paths: dict[str, str] = {}
    for name, text in launch.files.items():
        fd = anonymous_file(f"cloudboot-{name}", _fill(text, paths))
        fds.append(fd)
        paths[name] = fd_path(fd)
    env = client_environment(environ)
    env.update({key: _fill(value, paths) for key, value in launch.environment.items()})
    argv = [Path(path).name, *(_fill(word, paths) for word in launch.argv[1:]), *args]
    get_logger().debug(
        events.CLIENT_EXEC, client=path, host=config.target.host, port=config.target.port
    )
    for fd in fds:
        os.set_inheritable(fd, True)
    exec_program(argv, env, what="SQL client", path=path)


def _fill(text: str, paths: Mapping[str, str]) -> str:
    for name, path in paths.items():
        text = text.replace(placeholder(name), path)
    return text


def find_client(client: ClientSpec, environ: Mapping[str, str]) -> str:
    """The first of the client's binaries on the ``PATH`` of ``environ``."""
    search = environ.get("PATH", os.defpath)
    for name in client.binaries:
        found = shutil.which(name, path=search)
        if found:
            return found
    raise ProgramError(
        f"{' or '.join(client.binaries)} is not installed (not found on PATH)",
        hint=f"install the Debian package {client.package} in the image "
        f"(apt-get install --no-install-recommends {client.package})",
        exit_code=EXIT_NOT_FOUND,
    )


def client_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the client gets of ``environ``: an allow-list (locale, terminal, paths,
    the client's own display settings). Every credential variable of every source
    family, ``DATABASE_URL``, the URL variable cloudboot renders, ``PGPASSWORD``,
    ``MYSQL_PWD``: none of them can reach the client, whatever its name."""
    return {
        name: value
        for name, value in environ.items()
        if name in CLIENT_VARIABLES or name.startswith(CLIENT_PREFIXES)
    }


def anonymous_file(name: str, text: str) -> int:
    """A file descriptor for an anonymous in-memory file holding ``text``, mode 0600.

    The mode matters: libpq ignores a password file that group or others may read, and
    the MariaDB client ignores a world-writable option file (a memfd starts as 0777).
    """
    create = getattr(os, "memfd_create", None)
    if create is None:
        raise ProgramError(
            "this system has no anonymous files (memfd_create): cloudboot's SQL clients need Linux",
            exit_code=EX_OSERR,
        )
    fd: int = create(name, os.MFD_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    except BaseException:
        os.close(fd)
        raise
    return fd


def fd_path(fd: int) -> str:
    """The path under which the process that inherits ``fd`` opens it afresh."""
    return f"/proc/self/fd/{fd}"
