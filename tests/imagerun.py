"""Run an example image's ENTRYPOINT and CMD on this machine, without Docker.

There is no Docker engine here, so ``test_image_wordpress.py`` and
``test_image_phoenix.py`` run what the image would run: its ``ENTRYPOINT`` (read from
the Dockerfile, ``cloudboot``: the console script of this virtual environment) with its
``cloudboot.toml``, and a server command in place of the image's ``CMD``. cloudboot
execs the server, so a :class:`Task` is a long-running process whose PID is first
cloudboot's and then the server's.

Each task runs in a session of its own (its PID is its process group), with stdin
closed and its output in files (a pipe nobody reads would block a server). Stopping a
task signals the whole group: ``php -S`` with workers, for one, leaves its workers
running when only the master is signalled. The :class:`Tasks` fixture stops every task
it started, even when the test failed, and checks that no process is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakguard import assert_no_secret
from readers import clean_env, log_events

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
CLOUDBOOT_SCRIPT = Path(sys.executable).parent / "cloudboot"
"""The console script the package installs: the image's ``/usr/local/bin/cloudboot``."""

STOP_TIMEOUT = 15.0
"""Seconds a task's group gets between SIGTERM and SIGKILL."""


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` of a Dockerfile: its name, its base, and the exec-form ``ENTRYPOINT``
    and ``CMD`` it sets itself."""

    name: str | None
    base: str
    exec_forms: dict[str, list[str]]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(KEYWORD, rest)`` per instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    return found


def global_args(dockerfile: Path) -> dict[str, str]:
    """The ``ARG NAME=default`` lines before the first ``FROM``."""
    args: dict[str, str] = {}
    for keyword, rest in _instructions(dockerfile):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def stages(dockerfile: Path) -> list[Stage]:
    """Every stage of ``dockerfile``, in order; the last one is the default target."""
    found: list[Stage] = []
    for keyword, rest in _instructions(dockerfile):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(name, words[0], {}))
        elif keyword in {"ENTRYPOINT", "CMD"}:
            value = json.loads(rest)
            assert isinstance(value, list), f"{keyword} in {dockerfile} is not exec form"
            found[-1].exec_forms[keyword] = [str(word) for word in value]
    return found


def exec_form(dockerfile: Path, instruction: str, target: str | None = None) -> list[str]:
    """The exec-form ``ENTRYPOINT`` or ``CMD`` the image of ``target`` (default: the last
    stage, the default target) runs: its own, else the one of the stage it is built
    ``FROM``."""
    by_name = {stage.name: stage for stage in stages(dockerfile) if stage.name}
    stage = by_name[target] if target else stages(dockerfile)[-1]
    while instruction not in stage.exec_forms:
        assert stage.base in by_name, f"no {instruction} in {dockerfile} for {target}"
        stage = by_name[stage.base]
    return stage.exec_forms[instruction]


def entrypoint(image: str, target: str | None = None) -> list[str]:
    """The image's ``ENTRYPOINT`` as an argv for this machine (``cloudboot`` is this
    environment's console script)."""
    argv = exec_form(IMAGES / image / "Dockerfile", "ENTRYPOINT", target)
    assert argv == ["cloudboot"], f"the {image} image's ENTRYPOINT is {argv}"
    return [str(CLOUDBOOT_SCRIPT)]


@dataclass
class Task:
    """One container's first process: cloudboot, then (after the exec) the server."""

    name: str
    process: subprocess.Popen[bytes]
    stdout_file: Path
    stderr_file: Path
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False
    """Set once the group is known to be gone: its id may then belong to a stranger."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def stdout(self) -> str:
        return self.stdout_file.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_file.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """cloudboot's JSON log lines (the server's own lines are not JSON objects)."""
        return log_events(self.stderr())

    def event_names(self) -> list[str]:
        return [str(event.get("event")) for event in self.events()]

    def event(self, name: str, **fields: object) -> dict[str, Any]:
        """The first event ``name`` whose fields include ``fields``."""
        for event in self.events():
            if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        raise AssertionError(f"no {name} event with {fields} in {self}")

    def program(self) -> str:
        """The executable the task's PID runs now (``/proc/PID/exe``)."""
        return os.readlink(f"/proc/{self.pid}/exe")

    def check_output(self) -> None:
        """Fail if anything the task printed shows a secret."""
        assert_no_secret(self.stdout())
        assert_no_secret(self.stderr())

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def group_alive(self) -> bool:
        """Whether any process of the task's group is left (the leader may be a zombie
        until reaped, so reap first)."""
        self.process.poll()
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def __str__(self) -> str:
        state = f"exit {self.process.returncode}" if self.exited() else "running"
        return (
            f"task {self.name} (pid {self.pid}, {state})\n"
            f"stdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"
        )


class Tasks:
    """Starts tasks and stops every one of them at the end (the ``tasks`` fixture)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Task] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        home: Path,
        cwd: Path | None = None,
    ) -> Task:
        """``argv`` as a task: a session of its own, stdin closed, an environment of
        ``PATH``, ``LANG``, ``HOME`` and ``env`` only, output in files."""
        home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        stdout_file = self.logs / f"{name}.stdout"
        stderr_file = self.logs / f"{name}.stderr"
        with stdout_file.open("wb") as out, stderr_file.open("wb") as err:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=clean_env(home, env),
                cwd=cwd or home,
                start_new_session=True,
            )
        task = Task(name, process, stdout_file, stderr_file)
        self.started.append(task)
        return task

    def stop(self, tasks: Iterable[Task] | None = None) -> None:
        """SIGTERM each task's group (all at once, so their shutdowns overlap), wait,
        SIGKILL what is left, and reap. Asserts that no process of any group remains."""
        chosen = [task for task in (self.started if tasks is None else tasks) if not task.stopped]
        for task in chosen:
            task.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(task.group_alive() for task in chosen) and time.monotonic() < deadline:
            time.sleep(0.05)
        for task in chosen:
            # Only a group still there: once it is gone its id may be reused.
            if task.group_alive():
                task.signal_group(signal.SIGKILL)
            task.process.wait()
        left = [task.name for task in chosen if task.group_alive()]
        assert not left, f"processes left in the groups of {left}"
        for task in chosen:
            task.stopped = True


def http_get(url: str, *, timeout: float = 30.0) -> tuple[int, str, str]:
    """``GET url`` following redirects: status, final URL and body; an HTTP error status
    is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http:// only
            return response.status, response.url, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, url, error.read().decode("utf-8", "replace")


def http_post(url: str, form: Mapping[str, str], *, timeout: float = 60.0) -> tuple[int, str]:
    """``POST url`` with ``form`` url-encoded: status and body."""
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def wait_http(url: str, task: Task, *, timeout: float = 60.0) -> None:
    """Return once ``url`` answers at all; fail with the task's output if the task
    exits first or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        assert not task.exited(), f"the server never answered at {url}: {task}"
        try:
            http_get(url, timeout=5.0)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        else:
            return
        assert time.monotonic() < deadline, f"no answer at {url} after {timeout:.0f} s: {task}"
        time.sleep(0.1)
