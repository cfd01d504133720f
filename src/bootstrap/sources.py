"""Find the database credentials the platform injected, in the order SPEC gives.

1. ``CLOUDBOOT_SECRET_ENV=NAME``: the JSON object in ``NAME`` (or the file ``NAME_FILE``).
2. The one ``*_SECRET`` variable holding a JSON object with a ``host``.
3. One family of individual variables (Bitnami, official WordPress, ``DB_*``, libpq).
4. ``DATABASE_URL``.

The first source that yields a host wins, and a field it lacks is never filled from
another source. Every variable also accepts ``NAME_FILE``. Every field is judged here,
at once: problems are collected, and no message holds a value.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .engines import all_engines
from .readfile import UnreadableFile, read_regular_file
from .secret import Secret
from .settings import text_problem
from .target import EngineName, Source

MAX_SECRET_BYTES = 65536
"""A secret is small: AWS Secrets Manager holds at most 64 KiB."""
MAX_JSON_DEPTH = 16


@dataclass(frozen=True)
class Family:
    """A family of individual variables; ``None`` where the family has no such field."""

    label: str
    host: str
    port: str | None
    dbname: str
    user: str
    password: str
    engine: EngineName | None


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

URL_VARIABLE = "DATABASE_URL"


@dataclass(frozen=True)
class Credentials:
    """What one source yielded, every field judged; ``engine`` and ``port`` are ``None``
    when the source does not say (:func:`bootstrap.load` settles them)."""

    source: Source
    host: str
    port: int | None
    dbname: str
    user: str
    password: Secret
    engine: EngineName | None
    query: tuple[tuple[str, str], ...] = field(default=())
    """An incoming URL's query parameters, in order."""


class _Reader:
    """Reads variables with the ``NAME_FILE`` convention, collecting problems."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.used: list[str] = []
        self.reported: set[str] = set()  # names already reported (both set, unreadable)

    def has(self, name: str) -> bool:
        return name in self.environ or f"{name}_FILE" in self.environ

    def get(self, name: str) -> str | None:
        direct = self.environ.get(name)
        file_name = f"{name}_FILE"
        path = self.environ.get(file_name)
        if direct is not None and path is not None:
            self._problem(name, f"{name} and {file_name} are both set; set only one")
            return None
        if path is None:
            if direct is not None:
                self.used.append(name)
            return direct
        self.used.append(file_name)
        try:
            data = read_regular_file(path, limit=MAX_SECRET_BYTES)
            value = data.decode("utf-8")
        except FileNotFoundError:
            self._problem(name, f"{file_name}: the file does not exist")
            return None
        except UnreadableFile as exc:
            self._problem(name, f"{file_name}: the file cannot be read ({exc.reason})")
            return None
        except UnicodeDecodeError:
            self._problem(name, f"{file_name}: the file is not UTF-8 text")
            return None
        return value.removesuffix("\n")

    def _problem(self, name: str, text: str) -> None:
        self.problems.append(text)
        self.reported.add(name)


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


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def host_problem(host: str) -> str | None:
    """Why ``host`` is not one host name, IPv4 or IPv6 literal, or ``None``."""
    if not host:
        return "is empty"
    if any(c.isspace() or not c.isprintable() for c in host):
        return "contains white space or a control character"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if "," in host:
        return "is a list of hosts; cloudboot connects to one"
    if "/" in host:
        return "is a path (a Unix socket folder?); cloudboot connects over TCP to a host"
    if host.startswith("["):
        return "is an IPv6 address in brackets; give it without them"
    if ":" in host:
        return "looks like host:port; give the port in its own field"
    if not host.isascii():
        return "is not an ASCII host name (write an internationalized name in its xn-- form)"
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "is not a valid host name"
    return None


def _split_host_port(value: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    if value.startswith("[") and "]" in value:
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else (rest or None)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, None


@dataclass
class _Found:
    """Raw fields from one source, before they are judged."""

    source: str
    host: str | None
    port: int | None
    dbname: str | None
    username: str | None
    password: str | None
    engine: EngineName | None
    variables: tuple[str, ...]
    names: dict[str, str]  # field -> how to name it in a message
    query: tuple[tuple[str, str], ...] = ()


def _engine_names() -> dict[str, EngineName]:
    return {alias: engine.name for engine in all_engines() for alias in engine.secret_names}


def _json_depth_problem(text: str) -> bool:
    """Whether ``text`` nests arrays or objects deeper than :data:`MAX_JSON_DEPTH`
    (outside strings): a parser would recurse once per level."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _from_json(name: str, text: str, problems: list[str]) -> _Found | None:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SECRET_BYTES:
        problems.append(f"{name} is larger than {MAX_SECRET_BYTES} bytes: not a database secret")
        return None
    if _json_depth_problem(text):
        problems.append(f"{name} nests JSON deeper than {MAX_JSON_DEPTH} levels")
        return None
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
    names = {f: f"{name} field '{f}'" for f in ("host", "port", "dbname", "username", "password")}
    names["engine"] = f"{name} field 'engine'"
    fields: dict[str, str | None] = {}
    for key in ("host", "dbname", "username", "password"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{names[key]} must be a string")
            value = None
        fields[key] = value
    port = _port(data["port"], names["port"], problems) if data.get("port") is not None else None
    engine: EngineName | None = None
    raw_engine = data.get("engine")
    if raw_engine is not None:
        known = _engine_names()
        engine = known.get(str(raw_engine).lower()) if isinstance(raw_engine, str) else None
        if engine is None:
            problems.append(
                f"{names['engine']} names an engine cloudboot does not know "
                f"(known: {', '.join(sorted(known))})"
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
        names=names,
    )


def _is_candidate(text: str) -> bool:
    """A ``*_SECRET`` value that is meant as a database secret: a JSON object with a host.

    A value that starts like a JSON object but does not parse counts too, so that a
    truncated secret is reported instead of silently passed over.
    """
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return False
    if len(stripped) > MAX_SECRET_BYTES or _json_depth_problem(stripped):
        return True  # reported as such, not skipped
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        return True
    return isinstance(data, dict) and "host" in data


def _from_secret(reader: _Reader, secret_env: str | None) -> _Found | None:
    if secret_env:
        if not reader.has(secret_env):
            reader.problems.append(f"CLOUDBOOT_SECRET_ENV names {secret_env}, which is not set")
            return None
        text = reader.get(secret_env)
        return None if text is None else _from_json(secret_env, text, reader.problems)
    # Only values in the environment are looked at: a *_SECRET_FILE is opened only when
    # CLOUDBOOT_SECRET_ENV names it, never just to see what it holds.
    candidates = sorted(
        name
        for name, value in reader.environ.items()
        if name.endswith("_SECRET") and _is_candidate(value)
    )
    if len(candidates) > 1:
        listed = " and ".join(candidates)
        reader.problems.append(
            f"{listed} both hold a database secret; set CLOUDBOOT_SECRET_ENV to the one to use"
        )
        return None
    if not candidates:
        return None
    text = reader.get(candidates[0])
    return None if text is None else _from_json(candidates[0], text, reader.problems)


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
        names=names,
    )
    for key in ("username", "password"):
        if not getattr(found, key) and names[key] not in reader.reported:
            reader.problems.append(f"{names[key]} is missing ({family.host} is set)")
    return found


def _decoded(text: str, where: str, problems: list[str]) -> str | None:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        problems.append(f"{where} holds a percent-escape that is not UTF-8")
        return None


def _url_engines() -> dict[str, EngineName | None]:
    schemes: dict[str, EngineName | None] = {"ecto": None}  # Ecto's, for any engine
    for engine in all_engines():
        schemes.update(dict.fromkeys(engine.url_schemes, engine.name))
    return schemes


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
    schemes = _url_engines()
    if scheme not in schemes:
        reader.problems.append(
            f"{name} has a URL scheme cloudboot does not know (known: {', '.join(schemes)})"
        )
        return None
    names = {f: f"{name} ({f})" for f in ("host", "port", "dbname", "username", "password")}
    problems = reader.problems
    query: list[tuple[str, str]] = []
    for pair in filter(None, parts.query.split("&")):
        key, _, value = pair.partition("=")
        decoded_key = _decoded(key, f"{name} (query)", problems)
        decoded_value = _decoded(value, f"{name} (query)", problems)
        if decoded_key is not None and decoded_value is not None:
            query.append((decoded_key, decoded_value))
    found = _Found(
        source=name,
        host=parts.hostname and _decoded(parts.hostname, names["host"], problems),
        port=port,
        dbname=_decoded(parts.path.removeprefix("/"), names["dbname"], problems) or None,
        username=_decoded(parts.username, names["username"], problems) if parts.username else None,
        password=_decoded(parts.password, names["password"], problems)
        if parts.password is not None
        else None,
        engine=schemes[scheme],
        variables=(name,),
        names=names,
        query=tuple(query),
    )
    for key in ("username", "password"):
        if not getattr(found, key) and not any(names[key] in p for p in problems):
            problems.append(f"{names[key]} is missing")
    return found


def _judge(found: _Found, problems: list[str]) -> Credentials | None:
    names = found.names
    if found.host is None or found.host == "":
        problems.append(f"{names['host']} is empty")
    elif (problem := host_problem(found.host)) and text_problem(found.host) is None:
        problems.append(f"{names['host']} {problem}")
    if not found.dbname:
        problems.append(f"{names['dbname']} is missing: cloudboot needs the database name")
    for key in ("host", "dbname", "username", "password"):
        value = getattr(found, key)
        if value and (problem := text_problem(value)):
            problems.append(f"{names[key]} {problem}")
    if problems:
        return None
    assert found.host  # noqa: S101 - checked above
    assert found.dbname  # noqa: S101
    assert found.username  # noqa: S101
    assert found.password is not None  # noqa: S101
    return Credentials(
        source=Source(found.source, found.variables),
        host=found.host,
        port=found.port,
        dbname=found.dbname,
        user=found.username,
        password=Secret(found.password),
        engine=found.engine,
        query=found.query,
    )


def find_credentials(
    environ: Mapping[str, str], secret_env: str | None
) -> tuple[Credentials | None, list[str], dict[str, str]]:
    """The credentials from the first source that yields a host, every problem, and
    how to name each field in a message (field → variable)."""
    reader = _Reader(environ)
    found = _from_secret(reader, secret_env)
    if found is None and not reader.problems and not secret_env:
        for family in FAMILIES:
            found = _from_family(reader, family)
            if found is not None:
                break
    if found is None and not reader.problems and not secret_env:
        found = _from_url(reader, URL_VARIABLE)
    if found is None:
        if not reader.problems:
            reader.problems.append(_nothing_found(environ))
        return None, reader.problems, {}
    credentials = _judge(found, reader.problems)
    return credentials, reader.problems, found.names


def _nothing_found(environ: Mapping[str, str]) -> str:
    text = (
        "no database credentials found: set a *_SECRET JSON variable (as Copilot "
        "injects), CLOUDBOOT_SECRET_ENV, one family of DB_*/PG*/WORDPRESS_* "
        "variables, or DATABASE_URL"
    )
    files = sorted(n.removesuffix("_FILE") for n in environ if n.endswith("_SECRET_FILE"))
    if files:
        text += (
            f"; a secret in a file is read when CLOUDBOOT_SECRET_ENV names it "
            f"(CLOUDBOOT_SECRET_ENV={files[0]} to use {files[0]}_FILE)"
        )
    return text
