"""Run the real readers of cloudboot's artifacts, and cloudboot itself, as subprocesses.

Every program here runs with stdin closed, a ``HOME`` the test chose (a fresh one per
test, from ``conftest``) and an environment holding only ``PATH``, ``LANG`` and what the
test passes: nothing of the developer's ``PG*``/``MYSQL*`` settings can make a reader
succeed by accident. A missing reader fails the test with the Debian package to install;
nothing is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

import pytest

READER_PACKAGES = {
    "psql": "postgresql-client",
    "mariadb": "mariadb-client",
    "php": "php-cli",
    "elixir": "elixir",
    "sh": "dash",
}
WORDPRESS_DIR = Path("/usr/share/wordpress")
WP_SAMPLE = WORDPRESS_DIR / "wp-config-sample.php"


def reader(name: str) -> str:
    """The path of the reader ``name``; fails the test naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: install the Debian package {READER_PACKAGES[name]} "
            "(make test does it when run as root)",
            pytrace=False,
        )
    return path


def wordpress_sample() -> Path:
    """Debian's copy of WordPress's real ``wp-config-sample.php``."""
    if not WP_SAMPLE.is_file():
        pytest.fail(f"{WP_SAMPLE} is missing: install the Debian package wordpress", pytrace=False)
    return WP_SAMPLE


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``PATH``, ``LANG`` and ``HOME`` only, plus ``extra`` (and coverage's own variables,
    so that ``make test`` measures cloudboot in its processes too)."""
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        **{name: value for name, value in os.environ.items() if name.startswith("COVERAGE_")},
    }
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    *,
    home: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with stdin closed and a clean environment; never raises on exit code."""
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=clean_env(home, env),
        cwd=cwd or home,
        timeout=timeout,
        check=False,
    )


class Outcome(Protocol):
    """A finished program: ``subprocess.CompletedProcess`` or ``bootproc.Finished``."""

    @property
    def returncode(self) -> int: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...


def describe(result: Outcome) -> str:
    """Exit code and output of ``result`` for an assertion message (the leak guard
    redacts any secret in a failure text)."""
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


# --- cloudboot's output -----------------------------------------------------------------


def log_events(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines cloudboot wrote on stderr (not a terminal: JSON)."""
    events = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def failure(result: Outcome) -> dict[str, Any]:
    """The ``cloudboot.failed`` event of a failed run."""
    for event in log_events(result.stderr):
        if event.get("event") == "cloudboot.failed":
            return event
    raise AssertionError(f"no cloudboot.failed event:\n{describe(result)}")


# --- libpq ------------------------------------------------------------------------------


def psql(
    target: str,
    sql: str,
    *,
    home: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``psql -X -w TARGET -tAc SQL``: no ``.psqlrc``, never a password prompt."""
    return run([reader("psql"), "-X", "-w", target, "-tAc", sql], home=home, env=env)


# --- MariaDB ----------------------------------------------------------------------------


def mariadb_with_defaults(
    defaults_file: Path, sql: str, *, home: Path
) -> subprocess.CompletedProcess[str]:
    """The ``mariadb`` client reading only ``defaults_file`` (first option, as it must be)."""
    return run(
        [reader("mariadb"), f"--defaults-file={defaults_file}", "--batch",
         "--skip-column-names", "-e", sql],
        home=home,
    )  # fmt: skip


# SQLAlchemy's URL pattern (sqlalchemy/engine/url.py, _parse_url), used to read the
# mysql+pymysql:// URL exactly as an application's create_engine() would.
_SQLALCHEMY_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.VERBOSE,
)
_SQLALCHEMY_SSL_KEYS = ("ssl_ca", "ssl_key", "ssl_cert", "ssl_capath", "ssl_cipher")


@dataclass(frozen=True)
class SQLAlchemyURL:
    """A URL as SQLAlchemy reads it, and the keyword arguments its pymysql dialect makes."""

    drivername: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: dict[str, str]

    def pymysql_kwargs(self) -> dict[str, Any]:
        """What SQLAlchemy's MySQLdb/pymysql dialect passes to ``pymysql.connect``: the
        ``ssl_*`` query keys become the ``ssl`` dict (``ssl_check_hostname`` as a bool),
        the password as UTF-8 bytes (PyMySQL would send a ``str`` as Latin-1)."""
        opts = dict(self.query)
        ssl: dict[str, Any] = {}
        for key in _SQLALCHEMY_SSL_KEYS:
            if key in opts:
                ssl[key[4:]] = opts.pop(key)
        if "ssl_check_hostname" in opts:
            ssl["check_hostname"] = _asbool(opts.pop("ssl_check_hostname"))
        assert not opts, f"query keys SQLAlchemy's pymysql dialect would not understand: {opts}"
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.username,
            "password": (self.password or "").encode("utf-8"),
            "database": self.database,
            "connect_timeout": 10,
        }
        if ssl:
            kwargs["ssl"] = ssl
        return kwargs


def _asbool(value: str) -> bool:
    # sqlalchemy.util.asbool
    text = value.strip().lower()
    if text in ("true", "yes", "on", "y", "t", "1"):
        return True
    if text in ("false", "no", "off", "n", "f", "0"):
        return False
    raise ValueError(f"not a boolean: {value}")


def parse_sqlalchemy_url(url: str) -> SQLAlchemyURL:
    match = _SQLALCHEMY_URL.match(url)
    assert match is not None, "SQLAlchemy could not parse the URL"
    parts = match.groupdict()
    return SQLAlchemyURL(
        drivername=parts["name"],
        username=unquote(parts["username"]) if parts["username"] is not None else None,
        password=unquote(parts["password"]) if parts["password"] is not None else None,
        host=parts["ipv4host"] or parts["ipv6host"],
        port=int(parts["port"]) if parts["port"] else None,
        database=unquote(parts["database"]) if parts["database"] is not None else None,
        query=dict(parse_qsl(parts["query"])) if parts["query"] else {},
    )


# --- PHP --------------------------------------------------------------------------------

WP_CONSTANTS = (
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "DB_HOST",
    "DB_CHARSET",
    "DB_COLLATE",
    "MYSQL_CLIENT_FLAGS",
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
    "WP_DEBUG",
)

# Include wp-config.php the way WordPress does (ABSPATH defined, wp-settings.php next to
# it, here empty) and print every constant as JSON. Any notice or warning goes to stderr,
# which the caller requires to be empty.
_PHP_READ_CONSTANTS = r"""
error_reporting(E_ALL);
ini_set('display_errors', 'stderr');
define('ABSPATH', $argv[1] . '/');
include $argv[2];
$out = ['table_prefix' => $table_prefix ?? null, 'constants' => []];
foreach (array_slice($argv, 3) as $name) {
    $out['constants'][$name] = defined($name) ? constant($name) : null;
}
echo json_encode($out, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
"""


def php_read_wp_config(wp_config: Path, *, home: Path) -> dict[str, Any]:
    """``{"table_prefix": ..., "constants": {NAME: value}}`` as PHP sees ``wp_config``."""
    abspath = home / "wp-abspath"
    abspath.mkdir(exist_ok=True)
    (abspath / "wp-settings.php").write_text("<?php\n")
    # php.ini is read (no -n): the MYSQLI_* constants come from the mysqli extension,
    # which Debian's php-mysql enables there, as in a WordPress image.
    result = run(
        [reader("php"), "-r", _PHP_READ_CONSTANTS, "--", str(abspath), str(wp_config),
         *WP_CONSTANTS],
        home=home,
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    assert result.stderr == "", describe(result)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# Connect with mysqli the way WordPress's wpdb does: DB_HOST split into host and port,
# MYSQL_CLIENT_FLAGS as the client flags. Prints CURRENT_USER() and the TLS cipher, or
# "ERROR: ..." (mysqli throws since PHP 8.1).
_PHP_MYSQLI_CONNECT = r"""
error_reporting(E_ALL);
ini_set('display_errors', 'stderr');
define('ABSPATH', $argv[1] . '/');
include $argv[2];
$host = DB_HOST;
$port = null;
if (preg_match('/^\[(.*)\]:(\d+)$/', $host, $m) || preg_match('/^([^:]*):(\d+)$/', $host, $m)) {
    $host = $m[1];
    $port = (int) $m[2];
}
try {
    $db = mysqli_init();
    mysqli_real_connect($db, $host, DB_USER, DB_PASSWORD, DB_NAME, $port, null, MYSQL_CLIENT_FLAGS);
    $row = mysqli_query($db, "SELECT CURRENT_USER()")->fetch_row();
    $cipher = mysqli_query($db, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")->fetch_row();
    echo json_encode(['user' => $row[0], 'cipher' => $cipher[1]], JSON_THROW_ON_ERROR);
} catch (mysqli_sql_exception $e) {
    echo json_encode(['error' => $e->getMessage(), 'code' => $e->getCode()]);
}
"""


def php_mysqli_connect(
    wp_config: Path, *, home: Path, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Connect as WordPress would with the constants of ``wp_config``; ``{"user", "cipher"}``
    or ``{"error", "code"}``. ``env`` may set ``SSL_CERT_FILE`` (OpenSSL's default store).
    """
    abspath = home / "wp-abspath"
    abspath.mkdir(exist_ok=True)
    (abspath / "wp-settings.php").write_text("<?php\n")
    # php.ini is read (no -n): mysqli is a shared extension Debian enables there.
    result = run(
        [reader("php"), "-r", _PHP_MYSQLI_CONNECT, "--", str(abspath), str(wp_config)],
        home=home,
        env=env,
    )
    assert result.returncode == 0, describe(result)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --- Elixir -----------------------------------------------------------------------------

# Ecto's Ecto.Repo.Supervisor.parse_url/1, step by step: URI.parse, host and path checks,
# userinfo split at the FIRST ':' (Ecto 3.14+) and, for comparison, at every ':' keeping
# the first two pieces (older Ecto's destructure), URI.decode of every part, query decoded
# with URI.query_decoder then URI.decode again, "ssl=true" as a boolean. One line of
# hex-encoded, tab-separated fields per URL, so no output escaping can blur a byte.
_ELIXIR_PARSE_URLS = r"""
hex = &Base.encode16/1
decode = fn nil -> "" ; v -> URI.decode(v) end
[path] = System.argv()
path
|> File.read!()
|> String.split("\n", trim: true)
|> Enum.each(fn url ->
  info = URI.parse(url)
  ok = info.host != nil and info.path != nil and Regex.match?(~r"^/([^/])+$", info.path)
  [user, password] = String.split(info.userinfo || "", ":", parts: 2) ++ [nil] |> Enum.take(2)
  [old_user, old_password | _] = String.split(info.userinfo || "", ":") ++ [nil, nil]
  "/" <> database = info.path || "/"
  query =
    URI.query_decoder(info.query || "")
    |> Enum.flat_map(fn
      {"ssl", "true"} -> ["ssl", "boolean:true"]
      {"ssl", "false"} -> ["ssl", "boolean:false"]
      {k, v} -> [k, URI.decode(v)]
    end)
  fields =
    [info.scheme, to_string(ok), decode.(user), decode.(password), decode.(info.host),
     to_string(info.port), decode.(database), decode.(old_user), decode.(old_password)] ++ query
  IO.puts(Enum.map_join(fields, "\t", hex))
end)
"""


@dataclass(frozen=True)
class EctoURL:
    """What Ecto's ``parse_url`` makes of a URL."""

    scheme: str
    valid: bool
    username: str
    password: str
    host: str
    port: int | None
    database: str
    old_ecto_username: str
    old_ecto_password: str
    query: tuple[tuple[str, str], ...]


def elixir_parse_ecto_urls(urls: Sequence[str], *, home: Path) -> list[EctoURL]:
    """Parse every URL in ONE ``elixir`` run (it takes about a second to start)."""
    assert all("\n" not in url for url in urls)
    listing = home / "ecto-urls.txt"
    listing.write_text("".join(f"{url}\n" for url in urls), encoding="utf-8")
    result = run([reader("elixir"), "-e", _ELIXIR_PARSE_URLS, str(listing)], home=home)
    assert result.returncode == 0, describe(result)
    parsed = []
    for line in result.stdout.splitlines():
        fields = [bytes.fromhex(f).decode("utf-8") for f in line.split("\t")]
        query = fields[9:]
        parsed.append(
            EctoURL(
                scheme=fields[0],
                valid=fields[1] == "true",
                username=fields[2],
                password=fields[3],
                host=fields[4],
                port=int(fields[5]) if fields[5] else None,
                database=fields[6],
                old_ecto_username=fields[7],
                old_ecto_password=fields[8],
                query=tuple(zip(query[::2], query[1::2], strict=True)),
            )
        )
    assert len(parsed) == len(urls), describe(result)
    return parsed
