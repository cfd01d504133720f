"""cloudboot's own settings: ``CLOUDBOOT_*`` variables over an optional TOML file.

Every key is the variable's name without ``CLOUDBOOT_``, lower-cased. In the TOML file a
key may stand at the top level or inside any table (tables only group; their names are
not part of the key), and hooks are ``[[hooks]]`` tables.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "CLOUDBOOT_"
DEFAULT_CONFIG = "/etc/cloudboot.toml"

SslMode = Literal["verify-full", "verify-ca", "require", "disable"]
UrlScheme = Literal["postgresql", "postgres", "ecto", "mysql", "mysql+pymysql"]


class Hook(BaseModel):
    """One command run before the server, optionally under the database lock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    run: tuple[str, ...] | None = None
    shell: str | None = None
    lock: bool = True
    timeout: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_command(self) -> Hook:
        if (self.run is None) == (self.shell is None):
            raise ValueError("give exactly one of 'run' (an argv list) or 'shell'")
        if self.run is not None and not self.run:
            raise ValueError("'run' must not be empty")
        return self

    @property
    def argv(self) -> tuple[str, ...]:
        if self.shell is not None:
            return ("/bin/sh", "-c", self.shell)
        assert self.run is not None  # noqa: S101 - guaranteed by the validator
        return self.run


class Settings(BaseSettings):
    """Validated settings. Build them with :func:`load_settings`, not directly."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    config: str | None = None
    secret_env: str | None = None
    engine: Literal["postgres", "mysql"] | None = None
    sslmode: SslMode = "verify-full"
    ca_file: str = "system"
    wait_timeout: float = Field(default=300.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    create_database: bool = True
    collation: str | None = None
    release: str | None = None
    url_env: str = "DATABASE_URL"
    url_scheme: UrlScheme | None = None
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
    hooks: tuple[Hook, ...] = ()
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        # The CLI configures logging from these case-insensitively; agree with it.
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment is passed in by the caller (tests hand over plain dicts), so
        # pydantic-settings must not read os.environ behind our back.
        return (init_settings,)

    def all_hooks(self) -> tuple[Hook, ...]:
        """The TOML hooks in order, then ``migrate_command`` as a locked hook."""
        hooks = self.hooks
        if self.migrate_command:
            argv = tuple(shlex.split(self.migrate_command))
            hooks = (*hooks, Hook(name="migrate", run=argv, lock=True))
        return hooks


def _flatten(table: Mapping[str, Any], origin: str) -> tuple[dict[str, Any], list[str]]:
    flat: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in table.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner in flat:
                    problems.append(f"{inner} is set twice in {origin}")
                flat[inner] = inner_value
        else:
            if key in flat:
                problems.append(f"{key} is set twice in {origin}")
            flat[key] = value
    return flat, problems


def _read_toml(path: str, *, required: bool) -> tuple[dict[str, Any], list[str]]:
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        if required:
            return {}, [f"CLOUDBOOT_CONFIG names {path}, which does not exist"]
        return {}, []
    except OSError as exc:
        return {}, [f"CLOUDBOOT_CONFIG {path} cannot be read: {exc.strerror}"]
    import tomllib  # noqa: PLC0415 - only when there is a file: a few ms of every start

    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"{path} is not valid TOML: {exc}"]
    return _flatten(data, path)


def load_settings(environ: Mapping[str, str]) -> tuple[Settings | None, list[str]]:
    """Settings from ``environ`` over the TOML file, and every problem found.

    Returns the problems instead of raising so that the caller can report them together
    with the credential problems in one :class:`ConfigError`.
    """
    config_path = environ.get(PREFIX + "CONFIG")
    problems: list[str] = []
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    path = config_path or DEFAULT_CONFIG
    file_values, file_problems = _read_toml(path, required=bool(config_path))
    problems += file_problems
    for key, value in file_values.items():
        values[key] = value
        origins[key] = f"{key} in {path}"
    for name, value in environ.items():
        if name.startswith(PREFIX):
            key = name[len(PREFIX) :].lower()
            if value == "" and key not in _EMPTY_MEANS_OFF:
                continue  # empty means unset: the file's value, else the default, stands
            values[key] = value
            origins[key] = name
    values["config"] = config_path or (path if file_values else None)
    if values.get("hooks") is not None and origins.get("hooks", "").startswith(PREFIX):
        problems.append("CLOUDBOOT_HOOKS is not supported: define hooks in the TOML file")
        values.pop("hooks")
    values = {k: v for k, v in values.items() if v is not None}
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            loc = error["loc"]
            key = str(loc[0]) if loc else "?"
            where = origins.get(key, key)
            if error["type"] == "extra_forbidden":
                problems.append(f"{where} is not a cloudboot setting")
            else:
                detail = ".".join(str(p) for p in loc[1:])
                field = f" ({detail})" if detail else ""
                problems.append(f"{where}{field}: {error['msg']}")
        return None, problems
    return settings, problems


# Settings whose empty value means "do not write this artifact" rather than "unset".
_EMPTY_MEANS_OFF = frozenset({"pgpass", "pg_service_file", "profile", "my_cnf", "wp_config"})
