"""Throwaway PostgreSQL and MariaDB servers that accept only verified TLS with a password.

Pure helpers, no pytest: ``conftest.py`` wraps them in fixtures.

What a caller can rely on
-------------------------
* Every server listens on ``127.0.0.1`` and ``127.0.0.2`` (and ``::1`` when the machine
  has an IPv6 loopback, see :func:`has_ipv6_loopback`) on a free port of its own, never
  on the system servers' 5432/3306.
* Over TCP a login needs TLS *and* the right password: PostgreSQL's ``pg_hba.conf`` has
  only ``hostssl ... scram-sha-256`` lines, MariaDB runs with
  ``--require-secure-transport=ON`` and has no password-less account reachable over
  TCP (the ``root`` accounts for ``127.0.0.1``/``::1``/the host name are deleted at
  install time). MariaDB answers a plaintext login with error 1045.
* The server certificate is issued by :attr:`Certificates.ca` for ``localhost``,
  ``127.0.0.1`` and ``::1`` only.

TLS off
-------
``PostgresServer(certs, tls=False)`` and ``MariaDBServer(certs, tls=False)`` offer no TLS
at all (``ssl = off`` with plain ``host ... scram-sha-256`` lines; ``--skip-ssl``), still
with passwords: the server a client must refuse under every sslmode but ``disable``.
Their ``conninfo``/``admin_sql`` use ``sslmode=disable``.

Host-name mismatch
------------------
Both engines also listen on ``127.0.0.2``, an address the certificate does not name.
A client that trusts the right CA and connects to ``127.0.0.2`` therefore fails host-name
verification (libpq: ``server certificate for "localhost" ... does not match host name
"127.0.0.2"``; Python's ``ssl``: ``IP address mismatch``), while the same connection with
verification of the chain only (``sslmode=verify-ca``, ``check_hostname=False``)
succeeds. MariaDB 10.11 accepts a comma list in ``--bind-address``, so no ``/etc/hosts``
edit and no second server is needed. On Linux all of ``127.0.0.0/8`` is loopback.

Administration
--------------
PostgreSQL is administered with ``psql`` as :attr:`PostgresServer.admin_user` over
verified TLS (the password goes through ``PGPASSWORD`` in the child's environment, never
argv); MariaDB as ``root`` over its Unix socket (root has no password and exists only for
``localhost``, which over TCP never matches because of ``--skip-name-resolve``). SQL is
fed on stdin, so passwords in ``CREATE USER`` statements never appear in a process list.

Cleanup
-------
:meth:`cleanup` stops the server and deletes its folder; it is idempotent and also runs
at interpreter exit for any server still alive. The servers are context managers.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import trustme

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_OS_USER = "postgres"
STARTUP_TIMEOUT = 30.0
"""Seconds a server gets to come up (or go down) before we give up."""

HOST = "127.0.0.1"
MISMATCH_HOST = "127.0.0.2"
"""An address every server listens on but the server certificate does not name."""

CERT_IDENTITIES = ("localhost", "127.0.0.1", "::1")

# ---------------------------------------------------------------------------------------
# Passwords that break naive quoting. None holds CR, LF or NUL: no reader accepts those.

SECRET_PASSWORD = (
    "Ünïcødé pässwörd: 漢字 é \"double\" 'single' back\\slash $HOME `id` "
    "user:pass@host/db?q=1#frag 100%25 a+b c&d=e ;-- Z7q#vT9!kR2"
)
"""The ``secret_password`` fixture: every awkward character at once, 100+ characters."""

NASTY_PASSWORDS: tuple[str, ...] = (
    SECRET_PASSWORD,
    "colon:at@slash/question?hash#",  # URL delimiters, .pgpass field separator
    "percent%41%2F%3A%zz%",  # looks already encoded; a double decode changes it
    "plus+and space+=x",  # quote_plus/unquote_plus confusion
    "trailing backslash\\",  # escapes the closing quote if not doubled
    'it\'s "quoted" `cmd` $(id) ${HOME} $$',  # shell and PHP interpolation
    "  leading and trailing spaces  ",
    "?><?php echo 1; // */ -- #",  # PHP closing tag, comment starters
    "=key=value=",  # service-file style split at the first '='
    "#not-a-comment",  # '#' first: a comment only at the start of a line
    "пароль-密码-🔑-é-e\u0301",  # non-Latin-1, astral plane, NFC and NFD é
)
"""Passwords for parametrized tests; all logged in successfully on both engines."""


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1, 127.0.0.2 and (if present) ::1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if _port_is_free(socket.AF_INET, MISMATCH_HOST, port) and (
            not has_ipv6_loopback() or _port_is_free(socket.AF_INET6, "::1", port)
        ):
            return port
    raise RuntimeError("no free port found")


def _port_is_free(family: socket.AddressFamily, host: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


_ipv6: bool | None = None


def has_ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here (then the servers listen on it too)."""
    global _ipv6  # noqa: PLW0603 - computed once per process
    if _ipv6 is None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.bind(("::1", 0))
            _ipv6 = True
        except OSError:
            _ipv6 = False
    return _ipv6


def unique_name(prefix: str = "t") -> str:
    """A fresh lower-case identifier such as ``t_3f9a0c1d2b``, valid for users and
    databases on both engines (PostgreSQL reserves role names starting ``pg_``)."""
    return f"{prefix}_{secrets.token_hex(5)}"


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it returns true; ``TimeoutError`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class ServerError(RuntimeError):
    """A server could not be set up, started or administered; the message carries the
    tool's output (with any password passed as ``redact`` replaced by ``<SECRET>``)."""


def _redact(text: str, values: Sequence[str]) -> str:
    for value in values:
        if value:
            text = text.replace(value, "<SECRET>")
    return text


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    redact: Sequence[str] = (),
    timeout: float = 60.0,
) -> str:
    """Run a tool; its stdout, or ``ServerError`` with stdout and stderr."""
    result = subprocess.run(
        argv,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=dict(env) if env is not None else _clean_env(),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        output = _redact(f"{result.stdout}\n{result.stderr}".strip(), redact)
        raise ServerError(f"{Path(argv[0]).name} exited with {result.returncode}: {output}")
    return result.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything a database client would pick up."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PG", "MYSQL", "MARIADB", "SSL_CERT", "LC_"))
    }
    env["LANG"] = "C.UTF-8"
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Certificates:
    """Everything TLS the servers and the tests need, as files in one folder.

    ``ca_file`` is the CA to trust; ``server_cert_file`` (leaf then chain) and
    ``server_key_file`` are issued by it for ``localhost``, ``127.0.0.1`` and ``::1``.
    ``other_ca_file`` is an unrelated CA (a client trusting only it must reject the
    servers). Certificates are mode 0644, keys 0600, owned by the caller.
    """

    directory: Path
    ca: trustme.CA
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    other_ca: trustme.CA
    other_ca_file: Path

    def client_context(self, *, check_hostname: bool = True) -> ssl.SSLContext:
        """An ``SSLContext`` trusting only ``ca_file`` and verifying the chain (and the
        host name unless told otherwise)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = check_hostname
        return context


def make_certificates(directory: Path) -> Certificates:
    """Create both CAs and their server certificates in ``directory`` (created if
    missing)."""
    directory.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes, mode: int) -> Path:
        path = directory / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    ca, other_ca = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert(*CERT_IDENTITIES)
    return Certificates(
        directory=directory,
        ca=ca,
        ca_file=write("ca.pem", ca.cert_pem.bytes(), 0o644),
        server_cert_file=write(
            "server.crt", b"".join(pem.bytes() for pem in leaf.cert_chain_pems), 0o644
        ),
        server_key_file=write("server.key", leaf.private_key_pem.bytes(), 0o600),
        other_ca=other_ca,
        other_ca_file=write("other-ca.pem", other_ca.cert_pem.bytes(), 0o644),
    )


# ---------------------------------------------------------------------------------------
# Common server plumbing

_ALIVE: set[_Server] = set()

# Set by the suite's conftest for each test: whether the test is marked ``server``. A
# throwaway server made by a test without the mark is an error, so that ``make
# test-fast`` (``-m "not server"``) can never start one unnoticed.
starts_allowed: Callable[[], bool] = lambda: True  # noqa: E731 - outside pytest: always


@atexit.register
def _cleanup_leftovers() -> None:
    for server in list(_ALIVE):
        with contextlib.suppress(Exception):
            server.cleanup()


class _Server:
    """Folder, lifetime and readiness shared by both engines."""

    host: str = HOST

    def __init__(self, certs: Certificates, prefix: str) -> None:
        if not starts_allowed():
            raise ServerError(
                "this test makes a database server but is not marked 'server': request a "
                "fixture of conftest.SERVER_FIXTURES, or mark it"
            )
        self.certs = certs
        self.ca_file = certs.ca_file
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.log_file = self.directory / "server.log"
        self._cleaned = False
        _ALIVE.add(self)

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        """Every address the server listens on."""
        return (HOST, MISMATCH_HOST, *(("::1",) if has_ipv6_loopback() else ()))

    def start(self, wait: bool = True) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        raise NotImplementedError

    def is_ready(self) -> bool:
        """Whether the server answers a connection on ``host:port`` right now."""
        raise NotImplementedError

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until :meth:`is_ready`; ``ServerError`` with the log's tail if the
        server does not come up in time."""
        try:
            wait_for(self.is_ready, timeout=timeout, what=f"{type(self).__name__} to start")
        except TimeoutError as error:
            raise ServerError(f"{error}; log:\n{_tail(self.log_file)}") from None

    def restart(self, wait: bool = True) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        self.start(wait=wait)

    def cleanup(self) -> None:
        """Stop the server and delete its folder. Safe to call more than once."""
        if self._cleaned:
            return
        try:
            with contextlib.suppress(Exception):
                self.stop()
            self._force_stop()
            shutil.rmtree(self.directory, ignore_errors=True)
        finally:
            self._cleaned = True
            _ALIVE.discard(self)

    def _force_stop(self) -> None:
        """Last resort when a polite stop failed."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} {self.directory}>"


# ---------------------------------------------------------------------------------------
# PostgreSQL


def pg_identifier(name: str) -> str:
    """``name`` as a quoted PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def pg_literal(value: str) -> str:
    """``value`` as a PostgreSQL string literal (``standard_conforming_strings`` on: only
    ``'`` needs doubling; backslashes are plain characters)."""
    if "\0" in value:
        raise ValueError("PostgreSQL strings cannot hold NUL")
    return "'" + value.replace("'", "''") + "'"


class PostgresServer(_Server):
    """A PostgreSQL 15 cluster in a temporary folder owned by ``postgres``.

    Constructing one runs ``initdb`` (about a second) but does not start it, so the
    port is known before the server is up. Attributes: ``host`` (``127.0.0.1``),
    ``port``, ``admin_user``, ``admin_password`` (a superuser), ``ca_file``,
    ``directory``, ``data_dir``, ``log_file``.
    """

    def __init__(
        self, certs: Certificates, *, admin_user: str = "harness_admin", tls: bool = True
    ) -> None:
        super().__init__(certs, "cloudboot-pg-")
        self.tls = tls
        self.admin_user = admin_user
        self.admin_password = secrets.token_urlsafe(24)
        self.data_dir = self.directory / "data"
        try:
            self._initdb()
        except BaseException:
            self.cleanup()
            raise

    def _as_postgres(self, tool: str, *args: str, timeout: float = 60.0) -> str:
        return _run(
            ["runuser", "-u", PG_OS_USER, "--", str(PG_BIN / tool), *args],
            cwd=self.directory,
            timeout=timeout,
        )

    def _initdb(self) -> None:
        shutil.chown(self.directory, PG_OS_USER, PG_OS_USER)
        self.directory.chmod(0o700)
        pwfile = self.directory / "pwfile"
        self._write_owned(pwfile, self.admin_password + "\n", 0o600)
        try:
            self._as_postgres(
                "initdb",
                "-D", str(self.data_dir),
                "-U", self.admin_user,
                f"--pwfile={pwfile}",
                "-A", "scram-sha-256",
                "-E", "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        cert = self.directory / "server.crt"
        key = self.directory / "server.key"
        self._write_owned(cert, self.certs.server_cert_file.read_text(), 0o644)
        self._write_owned(key, self.certs.server_key_file.read_text(), 0o600)
        # TLS with a password, nothing else: no local, no plain host, no trust. The
        # TLS-off variant has plain host lines instead (and ssl off): still a password.
        kind = "hostssl" if self.tls else "host"
        self._write_owned(
            self.data_dir / "pg_hba.conf",
            f"{kind} all all 127.0.0.0/8 scram-sha-256\n{kind} all all ::1/128 scram-sha-256\n",
            0o600,
        )
        settings = {
            "listen_addresses": ",".join(self.listen_addresses),
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "ssl": "on" if self.tls else "off",
            "ssl_cert_file": str(cert),
            "ssl_key_file": str(key),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# cloudboot test harness\n")
            conf.writelines(f"{key} = {pg_literal(value)}\n" for key, value in settings.items())

    @staticmethod
    def _write_owned(path: Path, text: str, mode: int) -> None:
        path.write_text(text)
        path.chmod(mode)
        shutil.chown(path, PG_OS_USER, PG_OS_USER)

    def start(self, wait: bool = True) -> None:
        """Start the server. With ``wait`` return once it accepts connections; without,
        return at once (``pg_ctl -W``) so a test can watch it come up later."""
        try:
            self._as_postgres(
                "pg_ctl",
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
                *(("-w", "-t", str(int(STARTUP_TIMEOUT))) if wait else ("-W",)),
                "start",
            )  # fmt: skip
        except ServerError as error:
            raise ServerError(f"{error}\nlog:\n{_tail(self.log_file)}") from None

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait for it; nothing if it is not running."""
        if self.is_running():
            self._as_postgres(
                "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w",
                "-t", str(int(STARTUP_TIMEOUT)), "stop",
            )  # fmt: skip

    def _force_stop(self) -> None:
        if self.is_running():
            with contextlib.suppress(ServerError):
                self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop")

    def is_running(self) -> bool:
        """Whether the postmaster is running (it may still be starting up)."""
        if not self.data_dir.exists():
            return False
        try:
            self._as_postgres("pg_ctl", "-D", str(self.data_dir), "status")
        except ServerError:
            return False
        return True

    def is_ready(self) -> bool:
        try:
            _run([str(PG_BIN / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port), "-t", "1"])
        except ServerError:
            return False
        return True

    def conninfo(self, user: str, dbname: str = "postgres", host: str = HOST) -> str:
        """A libpq conninfo string (no password) with ``sslmode=verify-full`` (``disable``
        for the TLS-off variant)."""
        parts = {"host": host, "port": str(self.port), "user": user, "dbname": dbname}
        if self.tls:
            parts |= {"sslmode": "verify-full", "sslrootcert": str(self.ca_file)}
        else:
            parts["sslmode"] = "disable"
        return " ".join(f"{key}={_conninfo_value(value)}" for key, value in parts.items())

    def connect_kwargs(
        self, user: str, password: str, dbname: str = "postgres", host: str = HOST
    ) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` with verified TLS."""
        return {
            "host": host,
            "port": self.port,
            "user": user,
            "password": password,
            "dbname": dbname,
            "sslmode": "verify-full",
            "sslrootcert": str(self.ca_file),
            "connect_timeout": 10,
        }

    def admin_sql(self, sql: str, dbname: str = "postgres", *, redact: Sequence[str] = ()) -> str:
        """Run ``sql`` (read from stdin, stop at the first error) with ``psql -tAX`` as the
        admin over verified TLS; return psql's stdout (values only, ``|`` separated)."""
        return _run(
            ["psql", "-X", "-w", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
             "-d", self.conninfo(self.admin_user, dbname), "-f", "-"],
            env=_clean_env(PGPASSWORD=self.admin_password, PGCLIENTENCODING="UTF8"),
            stdin=sql,
            redact=(self.admin_password, *redact),
        )  # fmt: skip

    def create_user(self, name: str, password: str, *, createdb: bool = True) -> None:
        """A login role ``name`` with ``password`` (any characters but NUL), allowed to
        create databases unless told otherwise."""
        self.create_users([(name, password)], createdb=createdb)

    def create_users(self, users: Sequence[tuple[str, str]], *, createdb: bool = True) -> None:
        """:meth:`create_user` for each ``(name, password)``, in one ``psql`` run."""
        options = "LOGIN CREATEDB" if createdb else "LOGIN"
        self.admin_sql(
            "SET standard_conforming_strings = on;\n"
            + "".join(
                f"CREATE ROLE {pg_identifier(name)} {options} PASSWORD {pg_literal(password)};\n"
                for name, password in users
            ),
            redact=tuple(password for _, password in users),
        )

    def create_database(self, name: str, owner: str | None = None) -> None:
        owned = f" OWNER {pg_identifier(owner)}" if owner else ""
        self.admin_sql(f"CREATE DATABASE {pg_identifier(name)}{owned};")

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its sessions."""
        self.admin_sql(f"DROP DATABASE IF EXISTS {pg_identifier(name)} WITH (FORCE);")

    def database_exists(self, name: str) -> bool:
        query = f"SELECT 1 FROM pg_database WHERE datname = {pg_literal(name)};"  # noqa: S608
        found = self.admin_sql(query)
        return found.strip() == "1"


def _conninfo_value(value: str) -> str:
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------------------------------
# MariaDB


def mysql_literal(value: str) -> str:
    """``value`` as a MariaDB string literal for the default ``sql_mode`` (backslash
    escapes on)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return "'" + escaped + "'"


def mysql_identifier(name: str) -> str:
    """``name`` as a back-quoted MariaDB identifier."""
    return "`" + name.replace("`", "``") + "`"


class MariaDBServer(_Server):
    """A MariaDB 10.11 server in a temporary folder, run as root.

    Constructing one runs ``mariadb-install-db`` (under a second) but does not start it.
    Attributes: ``host`` (``127.0.0.1``), ``port``, ``socket_path``, ``ca_file``,
    ``directory``, ``data_dir``, ``log_file``. There is no admin password: the admin is
    ``root`` over ``socket_path`` only.
    """

    def __init__(self, certs: Certificates, *, tls: bool = True) -> None:
        super().__init__(certs, "cloudboot-mariadb-")
        self.tls = tls
        self.data_dir = self.directory / "data"
        self.socket_path = self.directory / "mysqld.sock"
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self._install()
        except BaseException:
            self.cleanup()
            raise

    def _install(self) -> None:
        # Without this, root@127.0.0.1, root@::1 and root@<hostname> would log in over
        # TCP with an empty password.
        extra = self.directory / "secure.sql"
        extra.write_text(
            "DELETE FROM mysql.global_priv WHERE host <> 'localhost';\n"
            "DELETE FROM mysql.proxies_priv WHERE host <> 'localhost';\n"
        )
        _run([
            "mariadb-install-db", "--no-defaults", f"--datadir={self.data_dir}",
            "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root",
            "--skip-name-resolve", f"--extra-file={extra}",
        ])  # fmt: skip

    def _server_argv(self) -> list[str]:
        return [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--port={self.port}",
            f"--bind-address={','.join(self.listen_addresses)}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.directory / 'mysqld.pid'}",
            f"--tmpdir={self.directory}",
            *self._tls_options(),
            "--skip-name-resolve",
            "--user=root",
            "--character-set-server=utf8mb4",
            "--max-connections=200",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
        ]

    def _tls_options(self) -> list[str]:
        if not self.tls:
            return ["--skip-ssl"]
        return [
            f"--ssl-ca={self.certs.ca_file}",
            f"--ssl-cert={self.certs.server_cert_file}",
            f"--ssl-key={self.certs.server_key_file}",
            "--require-secure-transport=ON",
        ]

    def start(self, wait: bool = True) -> None:
        """Start ``mariadbd``. With ``wait`` return once it greets on TCP; without,
        return at once so a test can watch it come up later."""
        if self.is_running():
            raise ServerError("MariaDB is already running")
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self._server_argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                start_new_session=True,  # a Ctrl-C reaches pytest, which then stops us
            )
        if wait:
            self.wait_until_ready()

    def stop(self) -> None:
        """Shut down (SIGTERM, as ``mariadb-admin shutdown`` would) and wait for the
        process to exit; nothing if it is not running."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise ServerError("MariaDB did not stop on SIGTERM; killed") from None

    def _force_stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def is_ready(self) -> bool:
        """Whether the server sends its greeting on ``127.0.0.1:port``."""
        if self._process is not None and self._process.poll() is not None:
            raise ServerError(
                f"mariadbd exited with {self._process.returncode}; log:\n{_tail(self.log_file)}"
            )
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as conn:
                return bool(conn.recv(64))
        except OSError:
            return False

    def connect_kwargs(
        self, user: str, password: str, database: str | None = None, host: str = HOST
    ) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` with a verifying ``SSLContext``;
        the password goes as UTF-8 bytes (PyMySQL sends ``str`` as Latin-1)."""
        return {
            "host": host,
            "port": self.port,
            "user": user,
            "password": password.encode("utf-8"),
            "database": database,
            "ssl": self.certs.client_context(),
            "connect_timeout": 10,
        }

    def admin_sql(self, sql: str, dbname: str | None = None, *, redact: Sequence[str] = ()) -> str:
        """Run ``sql`` (read from stdin) with the ``mariadb`` client as root over the
        Unix socket; return its tab-separated output without column names."""
        return _run(
            ["mariadb", "--no-defaults", f"--socket={self.socket_path}", "--user=root",
             "--batch", "--skip-column-names", "--default-character-set=utf8mb4",
             *([dbname] if dbname else [])],
            stdin=sql,
            redact=redact,
        )  # fmt: skip

    def create_user(self, name: str, password: str) -> None:
        """User ``name``@``%`` with ``password`` (sent as UTF-8) and ALL PRIVILEGES on
        ``*.*``, so it can create databases and use ``GET_LOCK``."""
        self.create_users([(name, password)])

    def create_users(self, users: Sequence[tuple[str, str]]) -> None:
        """:meth:`create_user` for each ``(name, password)``, in one ``mariadb`` run."""
        statements = []
        for name, password in users:
            account = f"{mysql_literal(name)}@'%'"
            statements.append(f"CREATE USER {account} IDENTIFIED BY {mysql_literal(password)};\n")
            statements.append(f"GRANT ALL PRIVILEGES ON *.* TO {account};\n")
        self.admin_sql(
            "".join(statements),
            redact=tuple(v for _, p in users for v in (p, mysql_literal(p))),
        )

    def create_database(self, name: str) -> None:
        self.admin_sql(f"CREATE DATABASE {mysql_identifier(name)};")

    def drop_database(self, name: str) -> None:
        self.admin_sql(f"DROP DATABASE IF EXISTS {mysql_identifier(name)};")

    def database_exists(self, name: str) -> bool:
        where = f"SCHEMA_NAME = {mysql_literal(name)}"
        query = f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE {where};"  # noqa: S608
        found = self.admin_sql(query)
        return found.strip() == "1"


# ---------------------------------------------------------------------------------------
# Factories handed to tests that need a private, stoppable server


class MakePostgresServer(Protocol):
    """The ``make_pg_server`` fixture: a private server, removed after the test."""

    def __call__(self, *, start: bool = True) -> PostgresServer: ...


class MakeMariaDBServer(Protocol):
    """The ``make_mariadb_server`` fixture: a private server, removed after the test."""

    def __call__(self, *, start: bool = True) -> MariaDBServer: ...
