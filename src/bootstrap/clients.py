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

import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from .credentials import DatabaseCredentials
from .errors import ConfigError, ProgramError, UsageError
from .execute import EXIT_NOT_FOUND, exec_program
from .logs import get_logger
from .render import render_my_cnf, render_pg_service, render_pgpass
from .settings import Settings
from .sources import load
from .tls import ca_file

# What `env`, `timeout` and the shell answer when a command cannot be found or run: a
# script can tell a missing client from cloudboot's own sysexits codes.
EX_OSERR = 71

CLIENTS: dict[str, tuple[tuple[str, ...], str, str]] = {
    # command: (binaries in order of preference, engine, Debian package)
    "psql": (("psql",), "postgres", "postgresql-client"),
    "mysql": (("mariadb", "mysql"), "mysql", "mariadb-client"),
}


def exec_client(command: str, args: Sequence[str], environ: Mapping[str, str]) -> NoReturn:
    """Replace this process with ``command``'s client, connected; never returns.

    Raises :class:`ConfigError` (78), :class:`UsageError` (64) for a client of the
    other engine, or :class:`ProgramError` (127 not installed, 126 cannot run, 71 no
    anonymous files on this system).
    """
    names, engine, package = CLIENTS[command]
    settings, credentials = load(environ)
    if credentials.engine != engine:
        other = "psql" if credentials.engine == "postgres" else "mysql"
        raise UsageError(
            f"the database in {credentials.source} is {credentials.engine}: use 'cloudboot {other}'"
        )
    path = find_client(names, environ, package)
    if engine == "postgres":
        argv, env, fds = _psql(credentials, settings, environ)
    else:
        argv, env, fds = _mysql(credentials, settings, environ)
    argv[0] = Path(path).name
    get_logger().debug(
        "cloudboot.client.exec", client=path, host=credentials.host, port=credentials.port
    )
    _exec(path, [*argv, *args], env, fds)


def find_client(names: Sequence[str], environ: Mapping[str, str], package: str) -> str:
    """The first of ``names`` on the ``PATH`` of ``environ``."""
    search = environ.get("PATH", os.defpath)
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return found
    raise ProgramError(
        f"{' or '.join(names)} is not installed (not found on PATH)",
        hint=f"install the Debian package {package} in the image "
        f"(apt-get install --no-install-recommends {package})",
        exit_code=EXIT_NOT_FOUND,
    )


def _psql(
    credentials: DatabaseCredentials, settings: Settings, environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str], list[int]]:
    # Any database on that server, so that `cloudboot psql postgres` logs in too; the
    # host, port and user stay exact, so the password goes nowhere else.
    any_database = dataclasses.replace(credentials, dbname="*")
    passfile = anonymous_file("cloudboot-pgpass", render_pgpass(any_database))
    service, problems = render_pg_service(
        credentials,
        name=settings.pg_service_name,
        sslmode=settings.sslmode,
        ca=ca_file(settings, environ),
        passfile=Path(fd_path(passfile)),
    )
    if problems:
        raise ConfigError(problems)
    service_file = anonymous_file("cloudboot-pg_service.conf", service)
    env = client_environment(environ, credentials)
    env.update(
        PGSERVICEFILE=fd_path(service_file),
        PGSERVICE=settings.pg_service_name,
        PGPASSFILE=fd_path(passfile),
    )
    # -w: never prompt, even when the password file does not match (another -d or -h
    # given by the operator): fail instead of hanging on a closed stdin.
    return ["psql", "-w"], env, [passfile, service_file]


def _mysql(
    credentials: DatabaseCredentials, settings: Settings, environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str], list[int]]:
    text = render_my_cnf(credentials, settings.sslmode, ca_file(settings, environ))
    defaults = anonymous_file("cloudboot-my.cnf", text)
    # --defaults-file (must come first): only this file, so neither /etc/mysql nor a
    # stale ~/.my.cnf can point the session elsewhere.
    argv = ["mariadb", f"--defaults-file={fd_path(defaults)}"]
    return argv, client_environment(environ, credentials), [defaults]


def client_environment(
    environ: Mapping[str, str], credentials: DatabaseCredentials
) -> dict[str, str]:
    """``environ`` without the variables that hold the password, and without the
    clients' own password variables, so that the in-memory files are what is used."""
    drop = {*credentials.variables, "PGPASSWORD", "MYSQL_PWD"}
    return {name: value for name, value in environ.items() if name not in drop}


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


def _exec(path: str, argv: Sequence[str], env: Mapping[str, str], fds: Sequence[int]) -> NoReturn:
    for fd in fds:
        os.set_inheritable(fd, True)
    exec_program(argv, env, what="SQL client", path=path)
