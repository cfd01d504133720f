"""The command line: the only module that parses argv, configures logging, prints
results and turns errors into exit codes."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from . import __version__, events
from .errors import CloudbootError, ConfigError, UsageError
from .logs import configure, get_logger
from .process import keep_memory_private
from .rendering import quote_dotenv, quote_shell, secret_forms

COMMANDS = ("run", "render", "env", "wait", "migrate", "check", "psql", "mysql")

USAGE = """\
usage: cloudboot [OPTIONS] [--] CMD [ARG...]     boot, then exec CMD (same as 'run')
       cloudboot render [--dry-run] [--json]     write the artifacts, say what changed
       cloudboot env [--format shell|dotenv|json]
       cloudboot wait [--timeout S]              wait until the database answers
       cloudboot migrate [--timeout S]           render, wait, ensure database, hooks
       cloudboot check [--json]                  diagnose the connection step by step
       cloudboot psql [ARG...] | mysql [ARG...]  the SQL client, already connected
       cloudboot --version

options: --config PATH (CLOUDBOOT_CONFIG), --timeout S (CLOUDBOOT_WAIT_TIMEOUT),
         --log-format json|console, --log-level debug|info|warning|error
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _split(argv: Sequence[str]) -> tuple[str, dict[str, str], list[str]]:
    """Global options, then the command and its words.

    The first word that is neither an option nor a command starts the server command,
    so ``ENTRYPOINT ["cloudboot"]`` with any ``CMD`` works.
    """
    options: dict[str, str] = {}
    takes_value = {"--config", "--timeout", "--log-format", "--log-level"}
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return "run", options, list(argv[index + 1 :])
        if word in ("--version", "-h", "--help"):
            return word, options, []
        name, eq, value = word.partition("=")
        if name in takes_value:
            if not eq:
                if index + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                index += 1
                value = argv[index]
            options[name] = value
        elif word.startswith("-"):
            raise UsageError(f"unknown option {word}")
        elif word in COMMANDS:
            return word, options, list(argv[index + 1 :])
        else:
            return "run", options, list(argv[index:])
        index += 1
    return "run", options, []


def _environ(base: Mapping[str, str], options: Mapping[str, str]) -> dict[str, str]:
    """The environment with the command-line options applied as the settings they are."""
    environ = dict(base)
    for option, variable in (
        ("--config", "CLOUDBOOT_CONFIG"),
        ("--timeout", "CLOUDBOOT_WAIT_TIMEOUT"),
        ("--log-format", "CLOUDBOOT_LOG_FORMAT"),
        ("--log-level", "CLOUDBOOT_LOG_LEVEL"),
    ):
        if option in options:
            environ[variable] = options[option]
    return environ


@dataclass
class _Progress:
    """One updating line on a terminal instead of an event per attempt: a structlog
    processor that draws the retry events of a waiting stage and erases the line
    before any other event is printed."""

    stream: TextIO
    what: str = "the database"
    shown: bool = False

    _STAGE_EVENTS = frozenset(
        name for stage in events.STAGES for name in (stage.retry, stage.attempt, stage.port_open)
    )

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        import structlog  # noqa: PLC0415 - loaded by logging already

        name = event.get("event")
        if name == events.WAIT_START:
            self.what = f"{event.get('host')}:{event.get('port')}"
        if name in self._STAGE_EVENTS:
            if "reason" in event:
                self._draw(event)
            raise structlog.DropEvent
        self.clear()
        return event

    def _draw(self, event: Mapping[str, Any]) -> None:
        line = (
            f"waiting for {self.what}: {float(event.get('elapsed_s', 0)):5.1f} s of "
            f"{float(event.get('timeout_s', 0)):g} s, last: {event.get('error_class')} "
            f"({event.get('reason')})"
        )
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the line, so the next output starts on a clean line."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def _configure_logging(environ: Mapping[str, str]) -> _Progress | None:
    fmt = environ.get("CLOUDBOOT_LOG_FORMAT")
    level = environ.get("CLOUDBOOT_LOG_LEVEL", "info").lower()
    fmt = fmt.lower() if fmt and fmt.lower() in ("json", "console") else None
    level = level if level in ("debug", "info", "warning", "error") else "info"
    stream = sys.stderr
    progress = None
    if stream.isatty() and fmt != "json" and level != "debug":
        progress = _Progress(stream)
    configure(fmt, level, stream, before_rendering=[progress] if progress else [])
    return progress


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run cloudboot; returns the exit code (the boot itself does not return: it execs)."""
    if argv is None:
        # Run as the program: what is loaded by now (pydantic, structlog, ...) stays until
        # the exit, so the collector need not walk it again, nor the interpreter's
        # shutdown, which skips frozen objects: 30-70 ms of every command that exits.
        gc.freeze()
    argv = sys.argv[1:] if argv is None else argv
    try:
        command, options, rest = _split(argv)
    except UsageError as exc:
        print(f"cloudboot: {exc}\n\n{USAGE}", file=sys.stderr, end="")
        return exc.exit_code
    if command == "--version":
        print(f"cloudboot {__version__}")
        return 0
    if command in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if environ is None:
        # The program, about to read a password: keep it out of core files and of
        # /proc/PID/mem and environ for other processes of this user, until the exec.
        keep_memory_private()
    env = _environ(os.environ if environ is None else environ, options)
    progress = _configure_logging(env)
    try:
        return _dispatch(command, rest, env)
    except UsageError as exc:
        if progress:
            progress.clear()
        print(f"cloudboot: {exc}\n\n{USAGE}", file=sys.stderr, end="")
        return exc.exit_code
    except CloudbootError as exc:
        _report(command, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        if progress:
            progress.clear()


def _report(command: str, exc: CloudbootError) -> None:
    fields: dict[str, Any] = {"command": command, "exit_code": exc.exit_code}
    if isinstance(exc, ConfigError):
        fields["problems"] = list(exc.problems)
    if exc.hint:
        fields["hint"] = exc.hint
    get_logger().error(events.FAILED, error=str(exc), **fields)


def _dispatch(command: str, rest: list[str], environ: dict[str, str]) -> int:
    if command == "render":
        parser = _Parser(prog="cloudboot render")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--json", action="store_true")
        args = parser.parse_args(rest)
        return _render(environ, dry_run=args.dry_run, as_json=args.json)
    if command == "env":
        parser = _Parser(prog="cloudboot env")
        parser.add_argument("--format", choices=("shell", "dotenv", "json"), default="shell")
        args = parser.parse_args(rest)
        return _env(environ, args.format)
    if command == "wait":
        parser = _Parser(prog="cloudboot wait")
        parser.add_argument("--timeout", type=float)
        args = parser.parse_args(rest)
        if args.timeout is not None:
            environ["CLOUDBOOT_WAIT_TIMEOUT"] = str(args.timeout)
        from .lifecycle import wait_only  # noqa: PLC0415 - drivers load only when needed

        wait_only(environ)
        return 0
    if command == "migrate":
        parser = _Parser(prog="cloudboot migrate")
        parser.add_argument("--timeout", type=float)
        args = parser.parse_args(rest)
        if args.timeout is not None:
            environ["CLOUDBOOT_WAIT_TIMEOUT"] = str(args.timeout)
        from .lifecycle import migrate  # noqa: PLC0415

        migrate(environ)
        return 0
    if command == "check":
        parser = _Parser(prog="cloudboot check")
        parser.add_argument("--json", action="store_true")
        args = parser.parse_args(rest)
        from .check import run_check  # noqa: PLC0415

        report = run_check(environ)
        print(report.to_json() if args.json else report.to_text())
        return report.exit_code
    if command in ("psql", "mysql"):
        from .clients import exec_client  # noqa: PLC0415

        exec_client(command, rest, environ)
        return 0  # not reached: exec_client execs the client
    return _run(rest, environ)


def _run(rest: list[str], environ: dict[str, str]) -> int:
    parser = _Parser(prog="cloudboot run", usage="cloudboot run [OPTIONS] [--] CMD [ARG...]")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(rest)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise UsageError("no command to run: give the server command after the options")
    if args.timeout is not None:
        environ["CLOUDBOOT_WAIT_TIMEOUT"] = str(args.timeout)
    from .lifecycle import boot  # noqa: PLC0415

    boot(environ, cmd)
    return 0  # not reached: boot execs the server


def _masked(value: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            value = value.replace(secret, "***")
    return value


def _render(environ: Mapping[str, str], *, dry_run: bool, as_json: bool) -> int:
    from .lifecycle import prepare, write_artifacts  # noqa: PLC0415

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
    else:
        for row in rows:
            if "variable" in row:
                print(f"{row['action']:<10} env   {row['variable']}={row['value']}")
            else:
                note = f"; {row['note']}" if "note" in row else ""
                print(f"{row['action']:<10} {row['mode']}  {row['path']}  ({row['kind']}{note})")
        if dry_run:
            print("(dry run: nothing written)")
    return 0


def _env(environ: Mapping[str, str], fmt: str) -> int:
    from .lifecycle import prepare  # noqa: PLC0415

    variables = prepare(environ).rendering.environment
    if fmt == "json":
        print(json.dumps(variables))
    elif fmt == "dotenv":
        print("".join(f"{k}={quote_dotenv(v)}\n" for k, v in variables.items()), end="")
    else:
        print("".join(f"export {k}={quote_shell(v)}\n" for k, v in variables.items()), end="")
    return 0
