"""cloudboot's own settings: ``CLOUDBOOT_*`` variables over an optional TOML file.

pydantic-settings does the reading: its environment source (prefix ``CLOUDBOOT_``,
exact case) over the mapping the caller passes in, and its TOML source over the file.
cloudboot adds what the contract asks on top (README, "Settings"):

- exactly one spelling of each name: ``CLOUDBOOT_SSLMODE`` in the environment,
  ``sslmode`` in the file; another case, an unknown name or one key given twice is a
  problem, so that a typo cannot leave a security setting at its default;
- tables in the file only group (``[tls] sslmode = ...`` is ``sslmode``);
- variables override the file; an empty variable means unset, except for the
  artifact paths, where it means "do not write this one";
- every problem is collected with the variable or key it came from, never its value.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from .readfile import UnreadableFile, read_regular_file
from .target import EngineName, SslMode

PREFIX = "CLOUDBOOT_"
DEFAULT_CONFIG = "/etc/cloudboot.toml"
MAX_CONFIG_BYTES = 1 << 20

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLLATION = re.compile(r"[A-Za-z0-9_]+")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# Signals a platform may send to stop a container (an image's STOPSIGNAL) besides
# SIGTERM and SIGINT, which always end the boot.
STOP_SIGNAL_NAMES = frozenset({"SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGPWR"})

# Settings whose empty value means "do not write this artifact" rather than "unset".
EMPTY_MEANS_OFF = frozenset({"pgpass", "pg_service_file", "profile", "my_cnf", "wp_config"})


def text_problem(value: str) -> str | None:
    """Why no reader can take ``value``, or ``None``: a CR, LF or NUL, or text that is
    not valid Unicode (an environment variable's bytes that are not UTF-8 arrive as lone
    surrogates)."""
    if any(c in value for c in "\r\n\0"):
        return "contains a CR, LF or NUL, which no reader accepts"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    return None


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> object:
    """``90``, ``90s``, ``1.5m``, ``500ms``, ``2h`` as seconds."""
    if not isinstance(value, str):
        return value
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError("must be a duration such as 90, 90s, 5m or 500ms")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, also written ``90s``, ``5m``, ``500ms``, ``1h``."""


def _check_text(value: object) -> object:
    for text in [value] if isinstance(value, str) else value if isinstance(value, tuple) else []:
        if isinstance(text, str) and (problem := text_problem(text)):
            raise ValueError(problem)
    return value


def _check_command(value: object) -> object:
    """A command may span lines (a shell script) but cannot hold a NUL (argv cannot)."""
    for text in [value] if isinstance(value, str) else value if isinstance(value, tuple) else []:
        if isinstance(text, str) and (problem := text_problem(text.replace("\n", " "))):
            raise ValueError(problem.replace("a CR, LF or NUL", "a CR or NUL"))
    return value


class Hook(BaseModel):
    """One command run before the server, optionally under the database lock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    run: tuple[str, ...] | None = None
    shell: str | None = None
    lock: bool = True
    timeout: Duration | None = Field(default=None, gt=0)

    _text = field_validator("name")(_check_text)
    _command = field_validator("run", "shell")(_check_command)

    @model_validator(mode="after")
    def _one_command(self) -> Hook:
        if (self.run is None) == (self.shell is None):
            raise ValueError("give exactly one of 'run' (an argv list) or 'shell'")
        if self.run is not None and (not self.run or not self.run[0]):
            raise ValueError("'run' must name a program")
        return self

    @property
    def argv(self) -> tuple[str, ...]:
        if self.shell is not None:
            return ("/bin/sh", "-c", self.shell)
        assert self.run is not None  # noqa: S101 - guaranteed by the validator
        return self.run


class Settings(BaseSettings):
    """Validated settings, each field the variable's name without ``CLOUDBOOT_``,
    lower-cased. Build them with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=PREFIX,
        case_sensitive=True,
        env_prefix_target="all",
        alias_generator=str.upper,
        validate_by_alias=True,
        validate_by_name=True,
    )

    config: str | None = None
    secret_env: str | None = None
    engine: EngineName | None = None
    sslmode: SslMode = "verify-full"
    ca_file: str = "system"
    wait_timeout: Duration = Field(default=300.0, gt=0)
    connect_timeout: Duration = Field(default=5.0, gt=0)
    lock_timeout: Duration = Field(default=1800.0, gt=0, le=2_000_000)
    lock_keepalive: int = Field(default=30, ge=5, le=3600)
    stop_signals: str | None = None
    create_database: bool = True
    collation: str | None = None
    release: str | None = None
    url_env: str | None = None
    url_scheme: str | None = None
    libpq_env: bool = False
    pgpass: str | None = None
    pg_service_file: str | None = None
    pg_service_name: str = "app"
    profile: str | None = None
    my_cnf: str | None = None
    wp_config: str | None = None
    wp_config_sample: str | None = None
    wp_collate: str = "utf8mb4_bin"
    owner: str | None = None
    migrate_command: str | None = None
    # Not JSON-decoded by pydantic-settings: `true` is a command, not a boolean.
    server: Annotated[tuple[str, ...] | None, NoDecode] = None
    hooks: tuple[Hook, ...] = ()
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    _text = field_validator("*", mode="before")(_check_text)

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        # The CLI configures logging from these case-insensitively; agree with it.
        return value.lower() if isinstance(value, str) else value

    @field_validator("secret_env", "url_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not _VARIABLE_NAME.fullmatch(value):
            raise ValueError("must be a variable name (letters, digits, _; not a digit first)")
        return value

    @field_validator("url_scheme")
    @classmethod
    def _dialect(cls, value: str | None) -> str | None:
        from .urls import DIALECTS  # noqa: PLC0415 - light; only when the setting is given

        if value is not None and value not in DIALECTS:
            raise ValueError(f"must be a URL dialect: {', '.join(DIALECTS)}")
        return value

    @field_validator("collation", "wp_collate")
    @classmethod
    def _collation(cls, value: str | None) -> str | None:
        if value and not _COLLATION.fullmatch(value):
            raise ValueError("must be a collation name such as utf8mb4_bin")
        return value

    @field_validator("stop_signals")
    @classmethod
    def _stop_signals(cls, value: str | None) -> str | None:
        if value is not None:
            names = value.replace(",", " ").split()
            wrong = [name for name in names if name.upper() not in STOP_SIGNAL_NAMES]
            if wrong or not names:
                raise ValueError("must name signals from " + ", ".join(sorted(STOP_SIGNAL_NAMES)))
        return value

    def stop_signal_numbers(self) -> tuple[int, ...]:
        """The extra signals that end the boot (``stop_signals``), as numbers."""
        names = (self.stop_signals or "").replace(",", " ").split()
        return tuple(int(signal.Signals[name.upper()]) for name in names)

    @field_validator("pg_service_name")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not _SERVICE_NAME.fullmatch(value):
            raise ValueError("must be a service name of letters, digits, '_', '.' and '-'")
        return value

    @field_validator("server", mode="before")
    @classmethod
    def _server_words(cls, value: object) -> object:
        # A variable holds a command line (split like a shell) or, beginning with "[", a
        # JSON array as in a Dockerfile's exec form; the file holds an argv list.
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                words = json.loads(value)
            except ValueError:
                raise ValueError("begins with '[' but is not a JSON array of strings") from None
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise ValueError("begins with '[' but is not a JSON array of strings")
            return tuple(words)
        if isinstance(value, str):
            try:
                value = tuple(shlex.split(value))
            except ValueError:
                raise ValueError("cannot be split like a shell line (an unclosed quote?)") from None
        return value

    @field_validator("server")
    @classmethod
    def _server_program(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("must name the server's program")
        _check_command(value)
        return value

    @field_validator("migrate_command")
    @classmethod
    def _command_line(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                words = shlex.split(value)
            except ValueError:
                raise ValueError("cannot be split like a shell line (an unclosed quote?)") from None
            if not words:
                raise ValueError("holds no command")
        return value

    @model_validator(mode="after")
    def _unique_hook_names(self) -> Settings:
        names = [hook.name for hook in self.all_hooks()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            listed = ", ".join(repr(name) for name in twice)
            raise ValueError(
                f"hook names must be unique; given more than once: {listed} "
                "(CLOUDBOOT_MIGRATE_COMMAND is the hook 'migrate')"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings runs the environment and TOML sources itself, over the mapping
        # and file it is given, so that it can name where each problem came from; the
        # model must not read os.environ behind its back.
        return (init_settings,)

    def all_hooks(self) -> tuple[Hook, ...]:
        """The TOML hooks in order, then ``migrate_command`` as the locked hook
        ``migrate``."""
        if not self.migrate_command:
            return self.hooks
        argv = tuple(shlex.split(self.migrate_command))
        return (*self.hooks, Hook(name="migrate", run=argv, lock=True))


FIELDS = frozenset(Settings.model_fields) - {"config"}


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source over the mapping the caller passes in."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(Settings, case_sensitive=True, env_prefix=PREFIX)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, case_sensitive=True)


class _TomlSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML source, reading the file with cloudboot's bounds (a
    regular file of at most 1 MiB) and flattening its tables."""

    def __init__(self, path: str) -> None:
        self.problems: list[str] = []
        super().__init__(Settings, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        import tomllib  # noqa: PLC0415 - only when there is a file: a few ms of every start

        path = str(file_path)
        try:
            text = read_regular_file(path, limit=MAX_CONFIG_BYTES).decode("utf-8")
            data = tomllib.loads(text)
        except UnreadableFile as exc:
            self.problems.append(f"CLOUDBOOT_CONFIG {path} cannot be read: {exc.reason}")
            return {}
        except UnicodeDecodeError:
            self.problems.append(f"{path} is not UTF-8 text")
            return {}
        except tomllib.TOMLDecodeError as exc:
            self.problems.append(f"{path} is not valid TOML: {exc}")
            return {}
        return _flatten(data, path, self.problems)


def _flatten(data: Mapping[str, Any], path: str, problems: list[str]) -> dict[str, Any]:
    """Top-level keys and the keys of top-level tables, as one level; every spelling
    and repetition problem noted."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        inner = value.items() if isinstance(value, dict) else [(key, value)]
        for name, item in inner:
            if isinstance(item, dict):
                problems.append(f"{name} in {path}: tables only group settings, one level deep")
                continue
            problem = _key_problem(name)
            if problem:
                problems.append(f"{name} in {path} {problem}")
            elif name in flat:
                problems.append(f"{name} is set twice in {path}")
            else:
                flat[name] = item
    return flat


def _key_problem(key: str) -> str | None:
    """Why the TOML key ``key`` is not a setting as spelled, or ``None``."""
    if key in FIELDS:
        return None
    if key.lower() in FIELDS:
        return f"must be spelled in lower case: {key.lower()}"
    return "is not a cloudboot setting" + _did_you_mean(key.lower(), FIELDS, str)


def _name_problem(name: str) -> str | None:
    """Why the environment variable ``name`` (``CLOUDBOOT_`` in any case, then anything)
    is not a setting as spelled, or ``None``."""
    key = name[len(PREFIX) :]
    if key.lower() == "hooks":
        return "is not supported: define hooks in the TOML file"
    names = (FIELDS - {"hooks"}) | {"config"}
    if name.startswith(PREFIX) and key == key.upper() and key.lower() in names:
        return None
    if key.lower() in names:
        return f"must be spelled {PREFIX}{key.upper()}"
    return "is not a cloudboot setting" + _did_you_mean(
        key.lower(), names, lambda field: PREFIX + field.upper()
    )


def _did_you_mean(key: str, names: frozenset[str], spell: Callable[[str], str]) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.75)
    return f" (did you mean {spell(close[0])}?)" if close else ""


def load_settings(environ: Mapping[str, str]) -> tuple[Settings | None, list[str]]:
    """Settings from ``environ`` over the TOML file, and every problem found.

    Returns the problems instead of raising so that the caller can report them together
    with the credential problems in one :class:`~bootstrap.errors.ConfigError`.
    """
    problems: list[str] = []
    for name in environ:
        if name.upper().startswith(PREFIX) and (problem := _name_problem(name)):
            problems.append(f"{name} {problem}")

    config_path = environ.get(PREFIX + "CONFIG") or None
    path = config_path or DEFAULT_CONFIG
    file_values: dict[str, Any] = {}
    if config_path is not None and not Path(path).exists():
        problems.append(f"CLOUDBOOT_CONFIG names {path}, which does not exist")
    elif Path(path).exists():
        if not Path(path).is_file():
            problems.append(f"CLOUDBOOT_CONFIG {path} is not a regular file")
        else:
            toml = _TomlSource(path)
            file_values = {key.lower(): value for key, value in toml().items()}
            problems += toml.problems

    given = {
        name: value
        for name, value in environ.items()
        if name.startswith(PREFIX)
        and _name_problem(name) is None
        and (value != "" or name[len(PREFIX) :].lower() in EMPTY_MEANS_OFF)
    }
    env_values = {key.lower(): value for key, value in _EnvironSource(given)().items()}
    env_values.pop("config", None)

    origins = {key: f"{key} in {path}" for key in file_values}
    origins.update({key: PREFIX + key.upper() for key in env_values})
    values = {**file_values, **env_values}
    values["config"] = config_path or (path if file_values else None)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            problems.append(_describe(error, origins))
        return None, problems
    return settings, problems


def _describe(error: Any, origins: Mapping[str, str]) -> str:
    loc = [str(part) for part in error["loc"]]
    key = loc[0].lower() if loc else ""
    where = origins.get(key) or key or "the hooks"
    detail = ".".join(loc[1:])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{where} is not a cloudboot setting"
    return f"{where}{f' ({detail})' if detail else ''}: {message}"
