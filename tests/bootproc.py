"""Helpers for the boot's black-box tests: a database target on a throwaway server, the
environment that points cloudboot at it, and cloudboot as a running process.

Used by ``test_wait.py``, ``test_hooks.py``, ``test_lifecycle.py``, ``test_check.py``
and ``test_clients.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakguard import assert_no_secret
from readers import clean_env, log_events
from servers import HOST, MariaDBServer, PostgresServer, unique_name

CLOUDBOOT = (sys.executable, "-m", "bootstrap")
"""How the tests start cloudboot: the real entry point, as a process of its own."""


@dataclass(frozen=True)
class Target:
    """A user (with a password) on one of the throwaway servers, and a database name
    that does not exist yet."""

    engine: str
    server: PostgresServer | MariaDBServer
    user: str
    password: str
    dbname: str

    def environ(self, **extra: str) -> dict[str, str]:
        """The variables that point cloudboot at this target (JSON logs, test CA, a 30 s
        deadline), with ``extra`` on top."""
        env = {
            "DB_HOST": HOST,
            "DB_PORT": str(self.port),
            "DB_NAME": self.dbname,
            "DB_USER": self.user,
            "DB_PASSWORD": self.password,
            "CLOUDBOOT_ENGINE": self.engine,
            "CLOUDBOOT_CA_FILE": str(self.ca_file),
            "CLOUDBOOT_LOG_FORMAT": "json",
            # Debug: the most there is to log, so the leak guard sees the most.
            "CLOUDBOOT_LOG_LEVEL": "debug",
            # A test that goes wrong fails in seconds, not after the default 300.
            "CLOUDBOOT_WAIT_TIMEOUT": "30",
        }
        env.update(extra)
        return env

    def database_exists(self) -> bool:
        return self.server.database_exists(self.dbname)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def ca_file(self) -> Path:
        return self.server.ca_file


def process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` (``R``, ``S``, ``Z`` for a zombie, ...), or
    ``None`` when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    return process_state(pid) not in (None, "Z")


def make_target(
    engine: str,
    server: PostgresServer | MariaDBServer,
    password: str,
    *,
    create_database: bool = False,
) -> Target:
    """A fresh user on ``server`` and a database name: still to be created, or with
    ``create_database`` created now (on PostgreSQL owned by the user; MariaDB users may
    use every database)."""
    user, dbname = unique_name("u"), unique_name("db")
    server.create_user(user, password)
    if create_database and isinstance(server, PostgresServer):
        server.create_database(dbname, owner=user)
    elif create_database:
        server.create_database(dbname)
    return Target(engine, server, user, password, dbname)


def start(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    home: Path,
    cwd: Path | None = None,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen[str]:
    """cloudboot ``args`` as a running process (stdin closed, clean environment, output
    captured); pair with :func:`finish`."""
    return subprocess.Popen(
        [*CLOUDBOOT, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=clean_env(home, env),
        cwd=cwd or home,
    )


@dataclass(frozen=True)
class Finished:
    """A finished cloudboot process (or in-process call): exit code, output, log events,
    wall time."""

    returncode: int
    stdout: str
    stderr: str
    elapsed: float = 0.0

    @property
    def events(self) -> list[dict[str, Any]]:
        return log_events(self.stderr)

    def names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events]

    def event(self, name: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("event") == name:
                return event
        raise AssertionError(f"no {name} event in:\n{self}")

    def __str__(self) -> str:
        return (
            f"exit {self.returncode} after {self.elapsed:.2f} s\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


def read_until(process: subprocess.Popen[str], event: str) -> str:
    """Read ``process``'s stderr up to the first log line of ``event``; what was read
    (hand it to :func:`finish` as ``stderr_before``)."""
    assert process.stderr is not None
    lines = []
    while line := process.stderr.readline():
        lines.append(line)
        if f'"event": "{event}"' in line:
            break
    return "".join(lines)


def finish(
    process: subprocess.Popen[str],
    *,
    started: float | None = None,
    timeout: float = 60.0,
    stderr_before: str = "",
    allow: Iterable[str] = (),
) -> Finished:
    """Wait for ``process`` (killed after ``timeout``) and check its output for secrets
    (``allow``: values its stdout may show on purpose, such as ``env``'s URL)."""
    started = time.monotonic() if started is None else started
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate()
    stderr = stderr_before + stderr
    result = Finished(process.returncode, stdout, stderr, time.monotonic() - started)
    assert_no_secret(stdout, allow=allow)
    assert_no_secret(stderr)
    return result


def run(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    home: Path,
    cwd: Path | None = None,
    timeout: float = 60.0,
    allow: Iterable[str] = (),
) -> Finished:
    """cloudboot ``args`` to completion, as a process of its own: the one way tests run
    the real program (see :func:`call` for the in-process entry point)."""
    started = time.monotonic()
    process = start(args, env, home=home, cwd=cwd)
    return finish(process, started=started, timeout=timeout, allow=allow)


def call(args: Sequence[str], env: Mapping[str, str], *, allow: Iterable[str] = ()) -> Finished:
    """``bootstrap.cli.main(args, env)`` in this process, its output captured and checked
    for secrets (``allow``: values its stdout may show): for what never execs or waits
    (``render``, ``env``, ``check``, any ``--help``)."""
    from bootstrap.cli import main  # noqa: PLC0415 - the entry point under test

    answers_at_once = {"--help", "-h", "--version", "-V"} & set(args)
    if args[:1] not in (["render"], ["env"], ["check"]) and not answers_at_once:
        raise ValueError(f"cloudboot {args[:1]} may exec or wait: run it as a process")
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args), dict(env))
    result = Finished(code, out.getvalue(), err.getvalue(), time.monotonic() - started)
    assert_no_secret(result.stdout, allow=allow)
    assert_no_secret(result.stderr)
    return result


def run_on_a_terminal(args: Sequence[str], env: Mapping[str, str], *, columns: int = 80) -> str:
    """cloudboot with stdout and stderr on a pseudo-terminal of ``columns`` columns;
    everything it printed, raw (escape sequences and carriage returns included)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        [*CLOUDBOOT, *args], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                data = os.read(leader, 65536)
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
    os.close(leader)
    process.wait(timeout=10)
    return b"".join(chunks).decode("utf-8", "replace")
