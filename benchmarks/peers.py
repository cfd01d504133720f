"""The waiters the time-to-ready figure puts side by side: cloudboot, the real tools
users pick (installed by ``make bench`` from their registries, pinned in
``benchmarks/peers/``), a hand-written ``pg_isready`` loop and the fixed-interval login
loops, each with its default interval.

Each waiter gets the command to run once it is satisfied (``next_command``, the same
for all) and says what it prints once it is waiting (``marker``), so that the server's
start can be placed after every waiter has made its first check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    BENCH_DIR,
    SHELL_DIR,
    Database,
    Interpreter,
    base_env,
    cloudboot_env,
    first_line,
)

PEERS_DIR = BENCH_DIR / "peers"
NODE_BIN = PEERS_DIR / "node_modules" / ".bin"
PEERS_PYTHON_BIN = PEERS_DIR / ".venv" / "bin"

Argv = list[str]


@dataclass(frozen=True)
class Waiter:
    """One way to wait for the database before the server starts.

    ``command(db, next_command)`` is its argv; ``environ(db, home)`` its environment.
    ``period`` is the interval of its loop: the server's start is spread over a multiple
    of it. ``checks`` says what it takes for "ready".
    """

    name: str
    period: float
    marker: str
    checks: str
    command: Callable[[Database, Sequence[str]], Argv]
    environ: Callable[[Database, Path], dict[str, str]]
    is_cloudboot: bool = False


def _plain(db: Database, home: Path) -> dict[str, str]:
    del db
    return base_env(home)


def _sh_then(waiter: str) -> Callable[[Database, Sequence[str]], Argv]:
    """``WAITER && exec NEXT``, as a Dockerfile's shell-form entrypoint writes it."""

    def command(db: Database, next_command: Sequence[str]) -> Argv:
        line = waiter.format(port=db.port) + ' && exec "$@"'
        return ["/bin/sh", "-c", line, "sh", *next_command]

    return command


def _login_loop(interval: float) -> Callable[[Database, Path], dict[str, str]]:
    def environ(db: Database, home: Path) -> dict[str, str]:
        return base_env(home, CONNINFO=db.conninfo(), INTERVAL=f"{interval:g}")

    return environ


def _poll_loop(db: Database, next_command: Sequence[str]) -> Argv:
    del db
    return ["/bin/sh", str(SHELL_DIR / "poll-loop.sh"), *next_command]


def cloudboot(interpreter: Interpreter, name: str = "cloudboot") -> Waiter:
    """cloudboot itself, with debug logs (one ``cloudboot.wait.attempt`` per attempt)."""

    def command(db: Database, next_command: Sequence[str]) -> Argv:
        del db
        return interpreter.command("--", *next_command)

    def environ(db: Database, home: Path) -> dict[str, str]:
        # The next command is the server here: /bin/sh is otherwise exec'd at once.
        server = f"/bin/sh {SHELL_DIR / 'next-command.sh'}"
        return cloudboot_env(
            db, home, interpreter, CLOUDBOOT_LOG_LEVEL="debug", CLOUDBOOT_SERVER=server
        )

    return Waiter(
        name, 1.0, '"cloudboot.wait.', "verified-TLS login + select 1",
        command, environ, is_cloudboot=True,
    )  # fmt: skip


def peers() -> list[Waiter]:
    """The real tools and the hand-written loops, with their default intervals."""
    return [
        Waiter(
            "pg_isready loop (until pg_isready; sleep 1)",
            1.0,
            "no response",
            "server state (startup packet, no login)",
            lambda db, nxt: [
                "/bin/sh", str(SHELL_DIR / "pg-isready-loop.sh"), "localhost", str(db.port), *nxt,
            ],
            _plain,
        ),
        Waiter(
            "wait-on tcp: (npm, 250 ms)",
            0.25,
            "waiting for",
            "TCP connect",
            # --log only prints what it waits for (the marker); polling is the default.
            _sh_then(f"{NODE_BIN / 'wait-on'} --log tcp:localhost:{{port}}"),
            _plain,
        ),
        Waiter(
            "wait-port (npm, 1 s)",
            1.0,
            "Waiting for",
            "TCP connect",
            _sh_then(f"{NODE_BIN / 'wait-port'} localhost:{{port}}"),
            _plain,
        ),
        Waiter(
            "wait-for-it (PyPI, 1 s)",
            1.0,
            "Waiting",
            "TCP connect",
            lambda db, nxt: [
                str(PEERS_PYTHON_BIN / "wait-for-it"), "--service", f"localhost:{db.port}",
                "--", *nxt,
            ],
            # Unbuffered: its "Waiting ..." line (the marker) reaches the file at once.
            lambda db, home: base_env(home, PYTHONUNBUFFERED="1"),
        ),
        Waiter(
            "1 s login loop (psql; wait4x, dockerize)",
            1.0,
            "waiting",
            "verified-TLS login + select 1",
            _poll_loop,
            _login_loop(1.0),
        ),
        Waiter(
            "5 s login loop (psql; Bitnami retry_while)",
            5.0,
            "waiting",
            "verified-TLS login + select 1",
            _poll_loop,
            _login_loop(5.0),
        ),
    ]  # fmt: skip


def missing() -> list[str]:
    """What ``make bench-peers`` has not installed."""
    wanted = [NODE_BIN / "wait-on", NODE_BIN / "wait-port", PEERS_PYTHON_BIN / "wait-for-it"]
    return [str(path) for path in wanted if not path.exists()]


def versions() -> dict[str, str]:
    """The installed version of every peer, for the header."""

    def npm(name: str) -> str:
        manifest = PEERS_DIR / "node_modules" / name / "package.json"
        try:
            return str(json.loads(manifest.read_text())["version"])
        except (OSError, ValueError, KeyError):
            return "not installed"

    pypi = sorted(PEERS_DIR.glob(".venv/lib/python*/site-packages/wait_for_it-*.dist-info"))
    return {
        "wait-on": npm("wait-on"),
        "wait-port": npm("wait-port"),
        "wait-for-it": (
            pypi[-1].name.removesuffix(".dist-info").split("-")[1] if pypi else "not installed"
        ),
        "pg_isready": first_line(["pg_isready", "--version"]),
        "psql": first_line(["psql", "--version"]),
        "node": first_line(["node", "--version"]),
    }
