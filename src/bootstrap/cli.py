"""The command line: the only module that parses argv, configures logging, prints
results and turns errors into exit codes.

It imports only the standard library until a command needs more: ``--version`` and
``--help`` answer without pydantic, structlog or a driver.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import __version__, events
from .errors import CloudbootError, ConfigError, UsageError

README = "README.md (the project's page; 'python -m pip show cloudboot' says where)"


@dataclass(frozen=True)
class Option:
    """One command-line option: its spellings, what it sets, and what it means."""

    flags: tuple[str, ...]
    help: str
    metavar: str | None = None  # None: a flag without a value
    variable: str | None = None  # the CLOUDBOOT_* setting it sets
    choices: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return self.flags[-1].lstrip("-").replace("-", "_")


GLOBAL_OPTIONS = (
    Option(("--config",), "the TOML settings file", "PATH", "CLOUDBOOT_CONFIG"),
    Option(
        ("--timeout",),
        "how long to wait for the database: 90, 90s, 5m",
        "DURATION",
        "CLOUDBOOT_WAIT_TIMEOUT",
    ),
    Option(
        ("--log-format",),
        "json lines, or readable lines (default: by terminal)",
        "FORMAT",
        "CLOUDBOOT_LOG_FORMAT",
        ("json", "console"),
    ),
    Option(
        ("--log-level",),
        "the least important events shown",
        "LEVEL",
        "CLOUDBOOT_LOG_LEVEL",
        ("debug", "info", "warning", "error"),
    ),
    Option(("-h", "--help"), "show this help and exit"),
    Option(("-V", "--version"), "show cloudboot's version and exit"),
)


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    options: tuple[Option, ...] = ()
    passes_arguments: bool = False  # the words after it are another program's


COMMANDS = {
    command.name: command
    for command in (
        Command(
            "run",
            "[OPTIONS] [--] [CMD [ARG...]]",
            "the boot for the server command (wait, ensure the database, hooks), then exec "
            "it; any other command is exec'd at once with the rendered variables and files",
        ),
        Command(
            "render",
            "[--dry-run] [--json]",
            "write the artifacts and say, per artifact, what changed",
            (
                Option(("--dry-run",), "write nothing; show what would be written"),
                Option(("--json",), "print the report as JSON"),
            ),
        ),
        Command(
            "env",
            "[--format shell|dotenv|json]",
            'print the rendered variables (eval "$(cloudboot env)"); writes nothing',
            (
                Option(
                    ("--format",),
                    "shell export lines, a dotenv file, or a JSON object",
                    "FORMAT",
                    choices=("shell", "dotenv", "json"),
                ),
            ),
        ),
        Command("wait", "[--timeout DURATION]", "wait until the database answers over TLS"),
        Command(
            "migrate",
            "[--timeout DURATION]",
            "render, wait, ensure the database, run the hooks; no exec",
        ),
        Command(
            "check",
            "[--json]",
            "diagnose the connection step by step",
            (Option(("--json",), "print the report as JSON"),),
        ),
        Command(
            "psql", "[ARG...]", "psql, already connected over verified TLS", passes_arguments=True
        ),
        Command(
            "mysql",
            "[ARG...]",
            "the mariadb/mysql client, already connected over verified TLS",
            passes_arguments=True,
        ),
    )
}


@dataclass
class Parsed:
    command: str
    options: dict[str, str | bool] = field(default_factory=dict)
    rest: list[str] = field(default_factory=list)


def one_edit_apart(word: str, other: str) -> bool:
    """Whether one insertion, deletion, substitution or swap of neighbours turns
    ``word`` into ``other``."""
    if word == other or abs(len(word) - len(other)) > 1:
        return False
    if len(word) == len(other):
        diff = [i for i in range(len(word)) if word[i] != other[i]]
        if len(diff) == 1:
            return True
        first, *rest = diff
        return rest == [first + 1] and (word[first], word[first + 1]) == (
            other[first + 1],
            other[first],
        )
    short, long = sorted((word, other), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _option(word: str, options: Sequence[Option]) -> tuple[Option, str | None] | None:
    name, eq, value = word.partition("=")
    for option in options:
        if name in option.flags:
            return option, (value if eq else None)
    return None


class _Parser:
    """One pass over argv: cloudboot's options may stand before or after the command
    name; the first word that is neither starts the server command."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.index = 0
        self.command: Command | None = None
        self.options: dict[str, str | bool] = {}

    def parse(self) -> Parsed:
        while self.index < len(self.argv):
            done = self._step(self.argv[self.index])
            if done is not None:
                return done
            self.index += 1
        return Parsed(self.command.name if self.command else "run", self.options, [])

    def _rest(self, command: str, start: int) -> Parsed:
        return Parsed(command, self.options, self.argv[start:])

    def _step(self, word: str) -> Parsed | None:
        command = self.command
        if word == "--":
            if command is None or command.name == "run":
                return self._rest("run", self.index + 1)
            if self.index + 1 < len(self.argv):
                raise UsageError(f"cloudboot {command.name} takes no argument after --")
            return Parsed(command.name, self.options, [])
        known = _option(word, [*GLOBAL_OPTIONS, *(command.options if command else ())])
        if known is not None:
            return self._take(*known)
        if word.startswith("-") and word != "-":
            if command is None or command.name == "run":
                # docker run IMAGE --flag: the flag is for the server command, as
                # docker-library's entrypoints take it.
                return self._rest("run", self.index)
            raise UsageError(f"cloudboot {command.name} has no option {word}")
        if command is not None and command.name == "run":
            return self._rest("run", self.index)
        if command is not None:
            raise UsageError(f"cloudboot {command.name} takes no argument {word!r}")
        if word in COMMANDS:
            self.command = COMMANDS[word]
            return self._rest(word, self.index + 1) if self.command.passes_arguments else None
        close = [name for name in COMMANDS if one_edit_apart(word, name)]
        if close and shutil.which(word) is None:
            raise UsageError(f"unknown command {word!r}; did you mean {close[0]!r}?")
        return self._rest("run", self.index)

    def _take(self, option: Option, value: str | None) -> Parsed | None:
        if option.metavar is not None and value is None:
            if self.index + 1 >= len(self.argv):
                raise UsageError(f"{option.flags[-1]} needs a value ({option.metavar})")
            self.index += 1
            value = self.argv[self.index]
        if option.choices and value not in option.choices:
            raise UsageError(f"{option.flags[-1]} takes {' or '.join(option.choices)}")
        if option.dest in ("help", "version"):
            return Parsed(
                f"--{option.dest}", self.options, [self.command.name] if self.command else []
            )
        self.options[option.dest] = True if value is None else value
        return None


def parse(argv: Sequence[str]) -> Parsed:
    """The command and its options; raises :class:`UsageError`."""
    return _Parser(argv).parse()


def _help(command: str | None) -> str:
    def table(options: Sequence[Option]) -> list[str]:
        lines = []
        for option in options:
            spelled = ", ".join(option.flags) + (f" {option.metavar}" if option.metavar else "")
            meaning = option.help
            if option.choices:
                meaning += f" ({', '.join(option.choices)})"
            if option.variable:
                meaning += f"; the setting {option.variable}"
            lines += textwrap.wrap(
                meaning, 88, initial_indent=f"  {spelled:<26} ", subsequent_indent=" " * 29
            )
        return lines

    if command:
        spec = COMMANDS[command]
        lines = [f"usage: cloudboot {spec.name} {spec.usage}", "", spec.summary, ""]
        if spec.options:
            lines += ["options:", *table(spec.options), ""]
        lines += ["cloudboot's options (before or after the command):", *table(GLOBAL_OPTIONS)]
    else:
        lines = [
            "usage: cloudboot [OPTIONS] [--] [CMD [ARG...]]",
            "       cloudboot COMMAND [OPTIONS]",
            "",
            "The first process of an application container: database credentials in,",
            "verified TLS, the database and its migrations made ready, then exec CMD.",
            "",
            "commands:",
        ]
        for spec in COMMANDS.values():
            lines += textwrap.wrap(
                spec.summary, 88, initial_indent=f"  {spec.name:<9} ", subsequent_indent=" " * 12
            )
        lines += [
            "",
            "options (before or after the command; a CLOUDBOOT_* variable sets each too):",
            *table(GLOBAL_OPTIONS),
            "",
            "'cloudboot COMMAND --help' shows a command's own options.",
        ]
    lines += ["", f"Every setting, source and exit code: {README}"]
    return "\n".join(lines) + "\n"


def _environ(base: Mapping[str, str], options: Mapping[str, str | bool]) -> dict[str, str]:
    """The environment with the command-line options applied as the settings they are."""
    environ = dict(base)
    for option in GLOBAL_OPTIONS:
        value = options.get(option.dest)
        if option.variable and isinstance(value, str):
            environ[option.variable] = value
    return environ


def initial_environ() -> dict[str, str]:
    """The environment this process was started with. Python itself may have added to
    ``os.environ`` (``LC_CTYPE`` by locale coercion, PEP 538): the server must get
    exactly what cloudboot was given, so it comes from ``/proc/self/environ``."""
    try:
        raw = open("/proc/self/environ", "rb").read()  # noqa: SIM115 - tiny, read once
    except OSError:
        return dict(os.environ)
    environ = {}
    for entry in raw.split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if eq:
            environ[os.fsdecode(name)] = os.fsdecode(value)
    return environ


# --- the terminal -------------------------------------------------------------------------


class _Terminal:
    """stderr on a terminal, with one updating progress line while a stage waits.

    Log lines and the progress line share the terminal: every log line is written
    whole, after the progress line is erased, under one lock; a clock redraws the line
    about every 200 ms so the elapsed time moves between attempts.
    """

    INTERVAL = 0.2

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.shown = False
        self.state: dict[str, Any] | None = None
        self.what = "the database"
        self.ticker: threading.Thread | None = None
        self.stop = threading.Event()

    # As a file for the logger: a whole line at a time.
    def write(self, text: str) -> int:
        with self.lock:
            self._erase()
            self.stream.write(text)
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return True

    # As a processor of the events: the waiting stages' events move the line.
    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        name = event.get("event")
        if name == events.WAIT_START:
            self.what = f"{event.get('host')}:{event.get('port')}"
        if name in _PROGRESS_EVENTS:
            if "reason" in event:
                self._waiting(event)
            import structlog  # noqa: PLC0415 - loaded by the logging already

            raise structlog.DropEvent
        if name in _DONE_EVENTS:
            self.done()
        return event

    def _waiting(self, event: Mapping[str, Any]) -> None:
        with self.lock:
            self.state = {
                "since": time.monotonic() - float(event.get("elapsed_s", 0)),
                "timeout": float(event.get("timeout_s", 0)),
                "reason": str(event.get("reason")),
            }
            self._draw()
        if self.ticker is None:
            self.ticker = threading.Thread(
                target=self._tick, name="cloudboot-progress", daemon=True
            )
            self.ticker.start()

    def _tick(self) -> None:
        while not self.stop.wait(self.INTERVAL):
            with self.lock:
                if self.state is not None:
                    self._draw()

    def line(self, columns: int) -> str:
        assert self.state is not None  # noqa: S101 - drawn only while waiting
        elapsed = time.monotonic() - self.state["since"]
        tail = f" — {elapsed:.0f} s of {self.state['timeout']:g} s — {self.state['reason']}"
        return fit(f"waiting for {self.what}", tail, columns - 1)

    def _draw(self) -> None:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 80
        self.stream.write("\r\x1b[K" + self.line(columns))
        self.stream.flush()
        self.shown = True

    def _erase(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.shown = False

    def done(self) -> None:
        """The wait is over: erase the line and stop the clock."""
        with self.lock:
            self.state = None
            self._erase()
            self.stream.flush()

    def close(self) -> None:
        self.stop.set()
        self.done()


_PROGRESS_EVENTS = frozenset(
    name
    for stage in events.STAGES
    for name in (stage.retry, stage.attempt, stage.port_open, stage.accepting)
)
_DONE_EVENTS = frozenset(
    {events.WAIT_READY, *(stage.gave_up for stage in events.STAGES), events.HOOK_LOCKED,
     events.DATABASE_CREATED, events.DATABASE_EXISTS, events.DATABASE_LOST_RACE}
)  # fmt: skip


def fit(head: str, tail: str, width: int) -> str:
    """``head + tail`` in at most ``width`` characters, the middle of ``head`` (a long
    host) shortened with an ellipsis first, then ``tail`` cut."""
    if len(head) + len(tail) <= width:
        return head + tail
    room = width - len(tail)
    if room >= 12:
        keep = room - 1
        return head[: (keep + 1) // 2] + "…" + head[len(head) - keep // 2 :] + tail
    return (head[:12] + tail)[: max(0, width)]


# --- running a command ---------------------------------------------------------------


def _configure_logging(environ: Mapping[str, str]) -> tuple[_Terminal | None, str]:
    from .logs import LEVELS, configure  # noqa: PLC0415 - structlog only when logging

    fmt = (environ.get("CLOUDBOOT_LOG_FORMAT") or "").lower() or None
    level = (environ.get("CLOUDBOOT_LOG_LEVEL") or "info").lower()
    fmt = fmt if fmt in ("json", "console") else None
    level = level if level in LEVELS else "info"
    stream = sys.stderr
    tty = stream.isatty()
    chosen = fmt or ("console" if tty else "json")
    terminal = _Terminal(stream) if tty and chosen == "console" and level != "debug" else None
    configure(
        chosen,
        level,
        terminal if terminal is not None else stream,  # type: ignore[arg-type]
        before_rendering=[terminal] if terminal else [],
    )
    return terminal, chosen


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run cloudboot; returns the exit code (the boot itself does not return: it execs)."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    try:
        parsed = parse(argv)
    except UsageError as exc:
        print(f"cloudboot: error: {exc}\n(see 'cloudboot --help')", file=sys.stderr)
        return exc.exit_code
    if parsed.command == "--version":
        print(f"cloudboot {__version__}")
        return 0
    if parsed.command == "--help":
        print(_help(parsed.rest[0] if parsed.rest else None), end="")
        return 0
    if program:
        # Run as the program: load what the command needs while the collector is off
        # (__main__ turns it off: nothing loaded is garbage), then freeze it, so that
        # neither the collector nor the interpreter's shutdown walks it again.
        for module in ("logs", *_LOADS.get(parsed.command, ())):
            importlib.import_module(f".{module}", __package__)
        gc.freeze()
        gc.enable()
        # About to read a password: keep it out of core files and of /proc/PID/mem and
        # environ for other processes of this user, until the exec.
        from .process import keep_memory_private  # noqa: PLC0415

        keep_memory_private()
    env = _environ(initial_environ() if environ is None else environ, parsed.options)
    terminal, fmt = _configure_logging(env)
    try:
        return _dispatch(parsed, env)
    except UsageError as exc:
        _close(terminal)
        print(f"cloudboot: error: {exc}\n(see 'cloudboot --help')", file=sys.stderr)
        return exc.exit_code
    except CloudbootError as exc:
        _close(terminal)
        _report(parsed.command, exc, fmt)
        return exc.exit_code
    except KeyboardInterrupt:
        _close(terminal)
        return 130
    finally:
        _close(terminal)


def _close(terminal: _Terminal | None) -> None:
    if terminal is not None:
        terminal.close()


def _report(command: str, exc: CloudbootError, fmt: str) -> None:
    if fmt == "console":
        # A person is reading: plain lines, every problem and the hint on its own.
        if isinstance(exc, ConfigError) and len(exc.problems) > 1:
            lines = [f"cloudboot: error: {len(exc.problems)} problems in the configuration:"]
            lines += [f"  - {problem}" for problem in exc.problems]
        else:
            lines = [f"cloudboot: error: {exc}"]
        if exc.hint:
            lines.append(f"  what to do: {exc.hint}")
        lines.append(f"  (cloudboot {command} exits {exc.exit_code})")
        from .redaction import redact_text  # noqa: PLC0415

        print(redact_text("\n".join(lines)), file=sys.stderr)
        return
    from .logs import get_logger  # noqa: PLC0415

    fields: dict[str, Any] = {"command": command, "exit_code": exc.exit_code}
    if isinstance(exc, ConfigError):
        fields["problems"] = list(exc.problems)
    if exc.hint:
        fields["hint"] = exc.hint
    get_logger().error(events.FAILED, error=str(exc), **fields)


# What each command loads before it reads anything (the retry engine and the driver
# come later, and only when a stage needs them: only the engine's driver is loaded).
_LOADS: dict[str, tuple[str, ...]] = {
    "render": ("lifecycle",),
    "env": ("lifecycle",),
    "wait": ("lifecycle",),
    "migrate": ("lifecycle",),
    "run": ("dispatch", "lifecycle"),
    "check": ("check",),
    "psql": ("clients",),
    "mysql": ("clients",),
}


def _dispatch(parsed: Parsed, environ: dict[str, str]) -> int:
    handlers: dict[str, Callable[[Parsed, dict[str, str]], int]] = {
        "render": _render,
        "env": _env,
        "wait": _wait,
        "migrate": _migrate,
        "check": _check,
        "psql": _client,
        "mysql": _client,
        "run": _run,
    }
    return handlers[parsed.command](parsed, environ)


def _wait(_parsed: Parsed, environ: dict[str, str]) -> int:
    from .lifecycle import wait_only  # noqa: PLC0415 - drivers load only when needed

    wait_only(environ)
    return 0


def _migrate(_parsed: Parsed, environ: dict[str, str]) -> int:
    from .lifecycle import migrate  # noqa: PLC0415

    migrate(environ)
    return 0


def _check(parsed: Parsed, environ: dict[str, str]) -> int:
    from .check import run_check  # noqa: PLC0415

    report = run_check(environ)
    print(report.to_json() if parsed.options.get("json") else report.to_text())
    return report.exit_code


def _client(parsed: Parsed, environ: dict[str, str]) -> int:
    from .clients import exec_client  # noqa: PLC0415

    exec_client(parsed.command, parsed.rest, environ)
    return 0  # not reached: exec_client execs the client


def _run(parsed: Parsed, environ: dict[str, str]) -> int:
    from .dispatch import run  # noqa: PLC0415

    run(environ, parsed.rest)
    return 0  # not reached: run execs


def _masked(value: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            value = value.replace(secret, "***")
    return value


def _render(parsed: Parsed, environ: dict[str, str]) -> int:
    from .lifecycle import prepare, write_artifacts  # noqa: PLC0415
    from .rendering import secret_forms  # noqa: PLC0415

    dry_run, as_json = bool(parsed.options.get("dry_run")), bool(parsed.options.get("json"))
    prepared = prepare(environ)
    secrets = sorted(secret_forms(prepared.config), key=len, reverse=True)
    rows: list[dict[str, Any]] = []
    for name, value in prepared.rendering.environment.items():
        current = environ.get(name)
        action = "create" if current is None else "unchanged" if current == value else "update"
        rows.append(
            {"variable": name, "value": _masked(value, secrets), "mode": None, "action": action}
        )
    for item in prepared.planned:
        row = {
            "kind": item.artifact.kind,
            "path": str(item.artifact.path),
            "mode": f"{item.mode:04o}",
            "action": item.action,
        }
        if item.artifact.note and item.action == "update":
            row["note"] = item.artifact.note
        rows.append(row)
    if not dry_run:
        write_artifacts(prepared)
    if as_json:
        print(json.dumps({"dry_run": dry_run, "artifacts": rows}, indent=2))
        return 0
    for row in rows:
        if "variable" in row:
            print(f"{row['action']:<10} env   {row['variable']}={row['value']}")
        else:
            note = f"; {row['note']}" if "note" in row else ""
            print(f"{row['action']:<10} {row['mode']}  {row['path']}  ({row['kind']}{note})")
    if dry_run:
        print("(dry run: nothing written)")
    return 0


def _env(parsed: Parsed, environ: dict[str, str]) -> int:
    from .lifecycle import prepare  # noqa: PLC0415
    from .rendering import quote_dotenv, quote_shell  # noqa: PLC0415

    prepared = prepare(environ)
    variables = dict(prepared.rendering.environment)
    # env writes no file: a path to a file that is not there would send libpq looking
    # for nothing. Those variables stay out until `cloudboot render` has written them.
    for name, kind in (("PGPASSFILE", "pgpass"), ("PGSERVICEFILE", "pg_service")):
        path = prepared.config.files.get(kind)
        if name in variables and (path is None or not path.is_file()):
            del variables[name]
    fmt = parsed.options.get("format") or "shell"
    if fmt == "json":
        print(json.dumps(variables))
    elif fmt == "dotenv":
        print("".join(f"{k}={quote_dotenv(v)}\n" for k, v in variables.items()), end="")
    else:
        print("".join(f"export {k}={quote_shell(v)}\n" for k, v in variables.items()), end="")
    return 0
