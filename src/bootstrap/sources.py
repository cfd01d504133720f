"""Find the database credentials the platform injected, in the order SPEC gives.

1. ``CLOUDBOOT_SECRET_ENV=NAME``: the JSON object in ``NAME``.
2. The one ``*_SECRET`` variable holding a JSON object with a ``host``.
3. One family of individual variables (Bitnami, official WordPress, ``DB_*``, libpq).
4. ``DATABASE_URL``.

The first source that yields a host wins, and a field it lacks is never filled from
another source. Every variable also accepts ``NAME_FILE``. Problems are collected and
raised together; no message holds a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .credentials import DEFAULT_PORTS, DatabaseCredentials, Engine, Secret
from .errors import ConfigError
from .settings import Settings, load_settings

ENGINES: dict[str, Engine] = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "aurora-postgresql": "postgres",
    "mysql": "mysql",
    "aurora-mysql": "mysql",
    "aurora": "mysql",
    "mariadb": "mysql",
    "tidb": "mysql",
}

URL_ENGINES: dict[str, Engine | None] = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mysql",
    "mysql+pymysql": "mysql",
    "mariadb": "mysql",
    "ecto": None,
}

PORT_ENGINES: dict[int, Engine] = {5432: "postgres", 3306: "mysql", 4000: "mysql"}


@dataclass(frozen=True)
class Family:
    """A family of individual variables; ``None`` where the family has no such field."""

    label: str
    host: str
    port: str | None
    dbname: str
    user: str
    password: str
    engine: Engine | None


FAMILIES = (
    Family(
        "WORDPRESS_DATABASE_*",
        "WORDPRESS_DATABASE_HOST",
        "WORDPRESS_DATABASE_PORT_NUMBER",
        "WORDPRESS_DATABASE_NAME",
        "WORDPRESS_DATABASE_USER",
        "WORDPRESS_DATABASE_PASSWORD",
        "mysql",
    ),
    Family(
        "WORDPRESS_DB_*",
        "WORDPRESS_DB_HOST",
        None,
        "WORDPRESS_DB_NAME",
        "WORDPRESS_DB_USER",
        "WORDPRESS_DB_PASSWORD",
        "mysql",
    ),
    Family("DB_*", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", None),
    Family("PG*", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "postgres"),
)


class _Reader:
    """Reads variables with the ``NAME_FILE`` convention, collecting problems."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.used: list[str] = []
        self.conflicts: set[str] = set()  # names already reported (both set, unreadable)

    def has(self, name: str) -> bool:
        return name in self.environ or f"{name}_FILE" in self.environ

    def get(self, name: str) -> str | None:
        direct = self.environ.get(name)
        file_name = f"{name}_FILE"
        path = self.environ.get(file_name)
        if direct is not None and path is not None:
            self.problems.append(f"{name} and {file_name} are both set; set only one")
            self.conflicts.add(name)
            return None
        if path is not None:
            self.used.append(file_name)
            try:
                value = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                self.problems.append(f"{file_name}: the file cannot be read ({reason})")
                self.conflicts.add(name)  # reported; not "missing" as well
                return None
            return value.removesuffix("\n")
        if direct is not None:
            self.used.append(name)
        return direct


def _port(value: object, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool):
        problems.append(f"{where} is not a port number")
        return None
    if isinstance(value, int):
        port = value
    elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        port = int(value.strip())
    else:
        problems.append(f"{where} is not a port number")
        return None
    if not 0 < port < 65536:
        problems.append(f"{where} is out of range (1-65535)")
        return None
    return port


def _split_host_port(value: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, None


@dataclass
class _Found:
    """Raw fields from one source, before the engine and port are settled."""

    source: str
    host: str | None
    port: int | None
    dbname: str | None
    username: str | None
    password: str | None
    engine: Engine | None
    variables: tuple[str, ...]
    field_names: dict[str, str]  # field -> how to name it in a message


def _from_json(name: str, text: str, problems: list[str]) -> _Found | None:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno})")
        return None
    if not isinstance(data, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
            type(data), "number"
        )
        problems.append(f"{name} must hold a JSON object, not a JSON {kind}")
        return None
    names = {
        f: f"{name} field '{f}'"
        for f in ("host", "port", "dbname", "username", "password", "engine")
    }
    fields: dict[str, str | None] = {}
    for key in ("host", "dbname", "username", "password"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{names[key]} must be a string")
            value = None
        fields[key] = value
    port = _port(data["port"], names["port"], problems) if data.get("port") is not None else None
    engine: Engine | None = None
    raw_engine = data.get("engine")
    if raw_engine is not None:
        engine = ENGINES.get(str(raw_engine).lower())
        if engine is None:
            problems.append(
                f"{names['engine']} names an engine cloudboot does not know "
                f"(known: {', '.join(sorted(ENGINES))})"
            )
    for key in ("username", "password"):
        if not fields[key]:
            problems.append(f"{names[key]} is missing")
    return _Found(
        source=name,
        host=fields["host"],
        port=port,
        dbname=fields["dbname"],
        username=fields["username"],
        password=fields["password"],
        engine=engine,
        variables=(name,),
        field_names=names,
    )


def _looks_like_candidate(text: str) -> bool:
    """A ``*_SECRET`` value that is meant as a database secret: a JSON object with a host.

    A value that starts like a JSON object but does not parse counts too, so that a
    truncated secret is reported instead of silently passed over.
    """
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return False
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        return True
    return isinstance(data, dict) and "host" in data


def _from_secret(reader: _Reader, settings: Settings) -> _Found | None:
    if settings.secret_env:
        name = settings.secret_env
        if not reader.has(name):
            reader.problems.append(f"CLOUDBOOT_SECRET_ENV names {name}, which is not set")
            return None
        text = reader.get(name)
        return None if text is None else _from_json(name, text, reader.problems)
    candidates: list[tuple[str, str]] = []
    names = sorted(
        {n.removesuffix("_FILE") for n in reader.environ if n.endswith(("_SECRET", "_SECRET_FILE"))}
    )
    for name in names:
        probe = _Reader(reader.environ)
        text = probe.get(name)
        if text is not None and _looks_like_candidate(text):
            candidates.append((name, text))
        elif probe.problems and f"{name}_FILE" in reader.environ:
            reader.problems += probe.problems
    if len(candidates) > 1:
        listed = " and ".join(n for n, _ in candidates)
        reader.problems.append(
            f"{listed} both hold a database secret; set CLOUDBOOT_SECRET_ENV to the one to use"
        )
        return None
    if not candidates:
        return None
    name, text = candidates[0]
    reader.get(name)  # record it as used
    return _from_json(name, text, reader.problems)


def _from_family(reader: _Reader, family: Family) -> _Found | None:
    if not reader.has(family.host):
        return None
    host = reader.get(family.host)
    port_text = reader.get(family.port) if family.port else None
    port: int | None = None
    port_name = family.port or family.host
    if host and family.port is None:
        host, port_text = _split_host_port(host)
    if port_text:
        port = _port(port_text, port_name, reader.problems)
    names = {
        "host": family.host,
        "port": port_name,
        "dbname": family.dbname,
        "username": family.user,
        "password": family.password,
    }
    found = _Found(
        source=family.label,
        host=host,
        port=port,
        dbname=reader.get(family.dbname),
        username=reader.get(family.user),
        password=reader.get(family.password),
        engine=family.engine,
        variables=tuple(dict.fromkeys(v for v in names.values() if reader.has(v))),
        field_names=names,
    )
    for key in ("username", "password"):
        if not getattr(found, key) and names[key] not in reader.conflicts:
            reader.problems.append(f"{names[key]} is missing ({family.host} is set)")
    return found


def _from_url(reader: _Reader, name: str) -> _Found | None:
    if not reader.has(name):
        return None
    text = reader.get(name)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        reader.problems.append(f"{name} is not a valid URL (bad host or port)")
        return None
    scheme = parts.scheme.lower()
    if scheme not in URL_ENGINES:
        reader.problems.append(
            f"{name} has a URL scheme cloudboot does not know (known: {', '.join(URL_ENGINES)})"
        )
        return None
    names = {f: f"{name} ({f})" for f in ("host", "port", "dbname", "username", "password")}
    found = _Found(
        source=name,
        host=parts.hostname and unquote(parts.hostname),
        port=port,
        dbname=unquote(parts.path.lstrip("/")) or None,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        engine=URL_ENGINES[scheme],
        variables=(name,),
        field_names=names,
    )
    for key in ("username", "password"):
        if not getattr(found, key):
            reader.problems.append(f"{names[key]} is missing")
    return found


def _settle(found: _Found, settings: Settings, problems: list[str]) -> DatabaseCredentials | None:
    names = found.field_names
    if not found.host:
        problems.append(f"{names['host']} is empty")
    if not found.dbname:
        problems.append(f"{names['dbname']} is missing: cloudboot needs the database name")
    for key in ("host", "dbname", "username", "password"):
        value = getattr(found, key)
        if value and any(c in value for c in "\r\n\0"):
            problems.append(f"{names[key]} contains a CR, LF or NUL, which no reader accepts")
    engine = settings.engine or found.engine
    if engine is None and found.port is not None:
        engine = PORT_ENGINES.get(found.port)
    if engine is None:
        problems.append(
            f"cannot tell the engine of {found.source}: set CLOUDBOOT_ENGINE to postgres or mysql"
        )
    if problems or engine is None:
        return None
    assert found.host  # noqa: S101 - checked above
    assert found.dbname  # noqa: S101
    assert found.username  # noqa: S101
    assert found.password is not None  # noqa: S101
    return DatabaseCredentials(
        engine=engine,
        host=found.host,
        port=found.port or DEFAULT_PORTS[engine],
        dbname=found.dbname,
        username=found.username,
        password=Secret(found.password),
        source=found.source,
        variables=found.variables,
    )


def find_credentials(
    environ: Mapping[str, str], settings: Settings
) -> tuple[DatabaseCredentials | None, list[str]]:
    """The credentials from the first source that yields a host, and every problem."""
    reader = _Reader(environ)
    found = _from_secret(reader, settings)
    if found is None and not reader.problems and not settings.secret_env:
        for family in FAMILIES:
            found = _from_family(reader, family)
            if found is not None:
                break
    if found is None and not reader.problems and not settings.secret_env:
        found = _from_url(reader, "DATABASE_URL")
    if found is None:
        if not reader.problems:
            reader.problems.append(
                "no database credentials found: set a *_SECRET JSON variable (as Copilot "
                "injects), CLOUDBOOT_SECRET_ENV, one family of DB_*/PG*/WORDPRESS_* "
                "variables, or DATABASE_URL"
            )
        return None, reader.problems
    credentials = _settle(found, settings, reader.problems)
    return credentials, reader.problems


def load(environ: Mapping[str, str]) -> tuple[Settings, DatabaseCredentials]:
    """Settings and credentials from ``environ``, or one :class:`ConfigError` with every
    problem in both."""
    settings, problems = load_settings(environ)
    # Credentials are looked for even when the settings are bad, so that one run
    # reports everything; the two settings they depend on are taken when valid.
    engine = environ.get("CLOUDBOOT_ENGINE")
    lookup = settings or Settings.model_construct(
        secret_env=environ.get("CLOUDBOOT_SECRET_ENV") or None,
        engine=engine if engine in ("postgres", "mysql") else None,
    )
    credentials, found_problems = find_credentials(environ, lookup)
    problems += found_problems
    if problems or settings is None or credentials is None:
        raise ConfigError(problems)
    return settings, credentials
