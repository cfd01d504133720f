"""Hooks: run in order with the rendered environment, in their own process group, under
the database lock, once per release; a failure stops the boot (70); a signal ends the
hook's whole group. Black-box against both throwaway servers, plus the runner alone."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

import bootstrap.wait
from bootproc import Target, alive, finish, run, start
from bootstrap import stop
from bootstrap.engines import engine_for
from bootstrap.engines.mysql import create_statement, lock_name, quote_identifier
from bootstrap.engines.postgres import advisory_key
from bootstrap.errors import HookError, Interrupted
from bootstrap.hooks import run_hook, run_hooks
from bootstrap.lifecycle import migrate
from bootstrap.settings import Hook, load_settings

# --- the runner alone ----------------------------------------------------------------


def shell_hook(name: str, script: str, **options: object) -> Hook:
    """A hook run by ``/bin/sh -c`` (what a TOML ``shell = ...`` hook is)."""
    return Hook.model_validate({"name": name, "shell": script, **options})


def _env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}


def test_a_non_zero_exit_is_a_hook_error_naming_the_hook() -> None:
    with pytest.raises(HookError, match=r"hook 'seed' \(/bin/sh\) exited with 3") as caught:
        run_hook(shell_hook("seed", "exit 3"), _env())
    assert caught.value.exit_code == 70


def test_death_by_signal_is_a_hook_error() -> None:
    with pytest.raises(HookError, match="killed by signal 9"):
        run_hook(shell_hook("crash", "kill -9 $$"), _env())


def test_a_program_that_does_not_exist_is_a_hook_error() -> None:
    with pytest.raises(HookError, match="cannot start /nonexistent/migrate"):
        run_hook(Hook(name="m", run=("/nonexistent/migrate",)), _env())


def test_stdin_is_closed_so_a_prompt_fails_instead_of_hanging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_hook(shell_hook("ask", f'read answer; echo "read:$?" > {out}'), _env())
    assert out.read_text() == "read:1\n"


# A process that may not call pidfd_open (434 on every architecture): what Linux before
# 5.3 or a seccomp profile older than the call gives. Then run hooks below their keeper.
_NO_PIDFD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]
code = (Filter * 4)(
    Filter(0x20, 0, 0, 0),            # load the syscall number
    Filter(0x15, 0, 1, 434),          # pidfd_open?
    Filter(0x06, 0, 0, 0x00050001),   # then fail it with EPERM
    Filter(0x06, 0, 0, 0x7FFF0000),   # allow everything else
)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(Program(4, code)), 0, 0) == 0  # a seccomp filter
try:
    os.close(os.pidfd_open(os.getpid()))
    sys.exit("pidfd_open still works")
except PermissionError:
    pass
from bootstrap.errors import HookError
from bootstrap.hooks import run_hook
from bootstrap.settings import Hook
env = {"PATH": os.environ["PATH"]}
run_hook(Hook(name="ok", shell="sleep 0.2; exit 0"), env)
try:
    run_hook(Hook(name="bad", shell="sleep 0.2; exit 3"), env)
except HookError as exc:
    print(exc.exit_code, exc)
"""


def test_hooks_run_where_pidfd_open_is_refused() -> None:
    # The keeper then notices the hook's end on its tick instead of through a pidfd.
    result = subprocess.run(
        [sys.executable, "-c", _NO_PIDFD], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(bootstrap.wait.__file__).parents[1])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The first hook succeeded (or the script would have failed); the second's status came
    # through as the boot's.
    assert re.fullmatch(r"70 hook 'bad' \(/bin/sh\) exited with 3 after [0-9.]+ s\n", result.stdout)


def _wait_gone(pids: list[int], timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def test_a_timeout_ends_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"
    started = time.monotonic()
    with pytest.raises(HookError, match=r"did not finish within 0.5 s"):
        run_hook(shell_hook("slow", script, timeout=0.5), _env())
    assert time.monotonic() - started < 5
    assert _wait_gone([int(p) for p in pids.read_text().split()]) == []


def test_a_signal_while_the_hook_is_being_started_still_ends_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook runs (and has a child) before Popen has returned in cloudboot; SIGTERM
    # lands right then. The group must still be ended, not left running without us.
    pids = tmp_path / "pids"
    real_popen = subprocess.Popen

    def popen_then_signal(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = real_popen(*args, **kwargs)
        deadline = time.monotonic() + 10
        while len(pids.read_text().split() if pids.exists() else []) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        return process

    monkeypatch.setattr(subprocess, "Popen", popen_then_signal)
    script = f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"
    with pytest.raises(Interrupted) as caught, stop.handled():
        run_hook(shell_hook("slow", script), _env())
    assert caught.value.exit_code == 143
    assert _wait_gone([int(p) for p in pids.read_text().split()]) == []


def test_hooks_run_in_order_with_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hooks = (
        shell_hook("one", f'echo "one $GREETING" >> {out}', lock=False),
        Hook(name="two", run=("sh", "-c", f'echo "two $GREETING" >> {out}'), lock=False),
    )
    run_hooks(hooks, {**_env(), "GREETING": "hi"}, _no_lock)
    assert out.read_text() == "one hi\ntwo hi\n"


def _no_lock(hook: Hook, _adopt: object) -> NoReturn:
    raise AssertionError(f"hook {hook.name} does not lock")


class FakeLease:
    def __init__(self, done: bool = False) -> None:
        self.was_done = done
        self.recorded = False

    def done(self) -> bool:
        return self.was_done

    def record(self) -> None:
        self.recorded = True

    def hand_over(self) -> None:
        pass

    def lost(self) -> None:
        return None


def test_locked_hooks_run_inside_the_lock_and_are_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    leases: dict[str, FakeLease] = {}
    order: list[str] = []

    @contextmanager
    def lock(hook: Hook, adopt: object) -> Iterator[FakeLease]:
        leases[hook.name] = FakeLease(done=hook.name == "done-before")
        order.append(f"lock {hook.name}" + (f" adopting {adopt}" if adopt else ""))
        try:
            yield leases[hook.name]
        finally:
            order.append(f"unlock {hook.name}")

    hooks = (
        shell_hook("migrate", f"echo migrate >> {out}"),
        shell_hook("done-before", f"echo done-before >> {out}"),
        shell_hook("free", f"echo free >> {out}", lock=False),
        shell_hook("fails", "exit 1"),
    )
    with pytest.raises(HookError):
        run_hooks(hooks, _env(), lock, adopt="the wait's connection")
    assert out.read_text() == "migrate\nfree\n"
    assert order == [
        "lock migrate adopting the wait's connection", "unlock migrate",
        "lock done-before", "unlock done-before",
        "lock fails", "unlock fails",
    ]  # fmt: skip
    assert leases["migrate"].recorded
    assert not leases["done-before"].recorded
    assert not leases["fails"].recorded


# --- lock and identifier helpers ----------------------------------------------------


def test_mysql_identifiers_double_their_backquotes() -> None:
    assert quote_identifier("a`b") == "`a``b`"
    statement = create_statement("app`x", "utf8mb4_bin")
    assert statement == (
        "CREATE DATABASE IF NOT EXISTS `app``x` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    assert create_statement("app", None).endswith("CHARACTER SET utf8mb4")


def test_a_collation_that_is_not_a_name_is_a_config_error() -> None:
    settings, problems = load_settings({"CLOUDBOOT_COLLATION": "utf8mb4_bin; DROP DATABASE x"})
    assert settings is None
    assert any("CLOUDBOOT_COLLATION" in problem for problem in problems)
    assert not any("DROP" in problem for problem in problems)


def test_lock_names_fit_and_keys_are_stable() -> None:
    assert lock_name("app") == "cloudboot:hooks:app"
    long_name = lock_name("d" * 64)
    assert len(long_name) <= 64
    assert long_name != lock_name("e" * 64)
    assert advisory_key("cloudboot:hooks") == advisory_key("cloudboot:hooks")
    assert -(2**63) <= advisory_key("x") < 2**63


# --- the boot against real servers ------------------------------------------------


def test_a_failing_hook_exits_70_and_the_server_never_runs(
    target: Target, home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "server-ran"
    env = target.environ(CLOUDBOOT_MIGRATE_COMMAND="sh -c 'exit 4'")
    result = run(["sh", "-c", f"touch {marker}"], env, home=home)
    assert result.returncode == 70, result
    assert not marker.exists()
    failed = result.event("cloudboot.failed")
    assert "hook 'migrate' (sh) exited with 4" in failed["error"]
    assert "cloudboot.exec" not in result.names()


def test_toml_hooks_then_the_migrate_command_in_order(
    target: Target, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "order"
    config = tmp_path / "cloudboot.toml"
    config.write_text(
        "[[hooks]]\n"
        f'name = "first"\nrun = ["sh", "-c", "echo first >> {out}"]\nlock = false\n'
        "[[hooks]]\n"
        f'name = "second"\nshell = "echo second-$SEEN_BY_HOOK >> {out}"\ntimeout = 30\n'
    )
    env = target.environ(
        CLOUDBOOT_CONFIG=str(config),
        CLOUDBOOT_MIGRATE_COMMAND=f"sh -c 'echo third >> {out}'",
        SEEN_BY_HOOK="yes",
    )
    result = run(["migrate"], env, home=home)
    assert result.returncode == 0, result
    assert out.read_text() == "first\nsecond-yes\nthird\n"
    assert target.database_exists()


def test_sigterm_during_a_hook_ends_the_hook_and_its_children(
    target: Target, home: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    hook = f"sh -c 'sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait'"
    process = start(["migrate"], target.environ(CLOUDBOOT_MIGRATE_COMMAND=hook), home=home)
    deadline = time.monotonic() + 30
    while len(pids.read_text().split() if pids.exists() else []) < 2:
        assert time.monotonic() < deadline, "the hook did not start"
        time.sleep(0.02)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    result = finish(process, started=sent, timeout=10)
    assert result.returncode == 143, result
    assert result.elapsed < 2.0, result
    assert _wait_gone([int(p) for p in pids.read_text().split()]) == []


HOOK_BODY = (
    'sh -c \'echo "start $$ $(date +%s%N)" >> {log}; sleep 0.1; '
    'echo "end $$ $(date +%s%N)" >> {log}\''
)


def _intervals(log: Path) -> list[tuple[int, int]]:
    starts: dict[str, int] = {}
    intervals = []
    for line in log.read_text().splitlines():
        what, pid, stamp = line.split()
        if what == "start":
            starts[pid] = int(stamp)
        else:
            intervals.append((starts.pop(pid), int(stamp)))
    assert not starts, "a hook started and never ended"
    return sorted(intervals)


def _ten_at_once(target: Target, home: Path, env: dict[str, str]) -> list[str]:
    processes = [start(["migrate"], env, home=home) for _ in range(10)]
    results = [finish(process, timeout=90) for process in processes]
    for result in results:
        assert result.returncode == 0, result
    return [name for result in results for name in result.names()]


def test_ten_tasks_at_once_create_the_database_and_take_turns(
    target: Target, home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    env = target.environ(CLOUDBOOT_MIGRATE_COMMAND=HOOK_BODY.format(log=log))
    names = _ten_at_once(target, home, env)
    assert target.database_exists()
    assert names.count("cloudboot.database.created") == 1
    intervals = _intervals(log)
    assert len(intervals) == 10  # no release id: every task runs it, one at a time
    _assert_took_turns(intervals)


def test_with_a_release_id_the_hook_runs_once_per_release(
    target: Target, home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    env = target.environ(
        CLOUDBOOT_MIGRATE_COMMAND=HOOK_BODY.format(log=log), CLOUDBOOT_RELEASE="v1.2.3"
    )
    names = _ten_at_once(target, home, env)
    assert len(_intervals(log)) == 1
    assert names.count("cloudboot.hook.skipped") == 9
    # A new release runs it again, once.
    again = run(["migrate"], {**env, "CLOUDBOOT_RELEASE": "v1.2.4"}, home=home)
    assert again.returncode == 0, again
    assert len(_intervals(log)) == 2


# --- the wait's login serves the first lock -------------------------------------------


def _counting_logins(monkeypatch: pytest.MonkeyPatch, engine: str) -> list[str | None]:
    """Every login the boot's stages make, through the engine's ``connect``."""
    logins: list[str | None] = []
    cls = type(engine_for(engine))  # type: ignore[arg-type]
    real = cls.connect

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        logins.append(kwargs.get("dbname"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, "connect", counted)
    return logins


def _migrated_once(target: Target, home: Path, log: Path) -> dict[str, str]:
    """The environment of a boot whose first hook is locked, after one in-process
    ``migrate`` that created the database (that wait found no database to keep)."""
    env = {
        **target.environ(CLOUDBOOT_MIGRATE_COMMAND=HOOK_BODY.format(log=log)),
        "HOME": str(home),
        "PATH": os.environ["PATH"],
    }
    migrate(env)
    return env


def _assert_took_turns(intervals: list[tuple[int, int]]) -> None:
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        assert end <= next_start, "two hook runs overlapped"


def test_the_first_locked_hook_takes_the_lock_on_the_waits_connection(
    target: Target, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    env = _migrated_once(target, home, log)
    logins = _counting_logins(monkeypatch, target.engine)
    migrate(env)
    assert logins == [None], "one login for the wait and the lock together"
    assert len(_intervals(log)) == 2
    # Held on that connection, the lock still excludes: ten at once still take turns.
    names = _ten_at_once(target, home, env)
    assert names.count("cloudboot.hook.locked") == 10
    _assert_took_turns(_intervals(log))


def test_a_kept_connection_that_died_costs_a_new_login_not_the_boot(
    target: Target, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    env = _migrated_once(target, home, log)
    real_probe = bootstrap.wait.probe

    def probe_then_lose_it(*args: Any, **kwargs: Any) -> Any:
        connection = real_probe(*args, **kwargs)
        assert connection is not None
        kill = "SELECT pg_terminate_backend(pg_backend_pid())"
        if target.engine == "mysql":
            kill = "KILL CONNECTION_ID()"
        with contextlib.suppress(Exception):  # the server ends the session mid-answer
            connection.cursor().execute(kill)
        return connection

    monkeypatch.setattr(bootstrap.wait, "probe", probe_then_lose_it)
    logins = _counting_logins(monkeypatch, target.engine)
    migrate(env)
    assert logins == [None, None], "the lock logged in anew"
    assert len(_intervals(log)) == 2
