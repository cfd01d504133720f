"""libpq reads what cloudboot renders for PostgreSQL, against the throwaway server that
accepts only verified TLS (``hostssl`` + SCRAM).

* ``psql -X -w "service=app"`` logs in with nothing but the rendered ``.pgpass`` and
  ``.pg_service.conf`` (written by ``cloudboot render`` run as a subprocess, the
  credentials in ``DB_SECRET``);
* the shell profile, sourced by ``sh``, gives ``psql`` a ``DATABASE_URL`` that logs in;
* psycopg logs in with the ``postgresql://`` and ``postgres://`` URLs;

for every password of ``NASTY_PASSWORDS`` (``: @ / ? # % +``, space, quotes, backslash,
``$``, backquote, non-ASCII, 100+ characters), an awkward user and database name, and an
IPv6 host. The TLS settings in the files are proved to be obeyed: a wrong CA and a host
name the certificate does not name are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest

from bootproc import run as cloudboot
from factories import rds_secret, url_of
from readers import describe, psql, run
from servers import HOST, MISMATCH_HOST, NASTY_PASSWORDS, PostgresServer, pg_identifier, pg_literal

APP_DB = "cloudboot_app"
ODD_USER = "us:er@x\\y'\"$`#é"
ODD_DB = "d b:x\\y#é=1"
ODD_PASSWORD = "odd-user:pass\\word@#"
IDS = [f"password{index}" for index in range(len(NASTY_PASSWORDS))]
SQL = (
    "select current_user, current_database(), "
    "(select ssl from pg_stat_ssl where pid = pg_backend_pid())"
)


@pytest.fixture(scope="module")
def pg_users(pg_server: PostgresServer) -> Iterator[list[str]]:
    """One role per nasty password (``cb_user_<n>``), and the app database, made in one
    admin session; plus the odd user owning the odd database. All dropped afterwards."""
    users = [f"cb_user_{index}" for index in range(len(NASTY_PASSWORDS))]
    statements = ["SET standard_conforming_strings = on;"]
    statements += [
        f"CREATE ROLE {pg_identifier(user)} LOGIN PASSWORD {pg_literal(password)};"
        for user, password in zip(users, NASTY_PASSWORDS, strict=True)
    ]
    statements += [
        f"CREATE ROLE {pg_identifier(ODD_USER)} LOGIN PASSWORD {pg_literal(ODD_PASSWORD)};",
        f"CREATE DATABASE {pg_identifier(APP_DB)};",
        f"CREATE DATABASE {pg_identifier(ODD_DB)} OWNER {pg_identifier(ODD_USER)};",
    ]
    pg_server.admin_sql("\n".join(statements), redact=(*NASTY_PASSWORDS, ODD_PASSWORD))
    yield users
    drops = [
        f"DROP DATABASE IF EXISTS {pg_identifier(APP_DB)} WITH (FORCE);",
        f"DROP DATABASE IF EXISTS {pg_identifier(ODD_DB)} WITH (FORCE);",
        *(f"DROP ROLE IF EXISTS {pg_identifier(user)};" for user in [*users, ODD_USER]),
    ]
    pg_server.admin_sql("\n".join(drops))


def secret_env(
    server: PostgresServer,
    user: str,
    password: str,
    *,
    host: str = HOST,
    dbname: str = APP_DB,
    **settings: str,
) -> dict[str, str]:
    """Copilot's ``DB_SECRET`` for ``user`` and the settings cloudboot needs here."""
    secret = rds_secret(
        host=host, port=server.port, dbname=dbname, username=user, password=password
    )
    return {"DB_SECRET": secret, "CLOUDBOOT_CA_FILE": str(server.ca_file), **settings}


def render_files(env: Mapping[str, str], home: Path) -> None:
    """``cloudboot render`` as a subprocess; it must succeed (its output is leak-checked)."""
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 0, describe(result)


def rendered_url(env: Mapping[str, str], home: Path) -> str:
    """The URL variable the library renders for ``env`` (as the CLI would)."""
    environ = {**env, "HOME": str(home)}
    return url_of(environ)


def assert_logged_in(result_stdout: str, user: str, dbname: str) -> None:
    assert result_stdout.strip() == f"{user}|{dbname}|t"


@pytest.mark.parametrize("index", range(len(NASTY_PASSWORDS)), ids=IDS)
def test_psql_service_profile_and_psycopg_log_in(
    pg_server: PostgresServer, pg_users: list[str], home: Path, index: int
) -> None:
    user, password = pg_users[index], NASTY_PASSWORDS[index]
    env = secret_env(pg_server, user, password, CLOUDBOOT_PROFILE=str(home / "app.profile"))
    render_files(env, home)
    assert sorted(p.name for p in home.iterdir()) == [".pg_service.conf", ".pgpass", "app.profile"]

    # Only the two files: no variable, no argument holds anything but the service name.
    result = psql("service=app", SQL, home=home)
    assert result.returncode == 0, describe(result)
    assert_logged_in(result.stdout, user, APP_DB)

    # Without the files, the profile's DATABASE_URL alone logs in through sh and psql.
    (home / ".pgpass").unlink()
    (home / ".pg_service.conf").unlink()
    script = '. ./app.profile; exec psql -X -w "$DATABASE_URL" -tAc "$1"'
    result = run(["sh", "-c", script, "sh", SQL], home=home)
    assert result.returncode == 0, describe(result)
    assert_logged_in(result.stdout, user, APP_DB)

    # psycopg with the URL in both libpq schemes.
    for scheme in ("postgresql", "postgres"):
        url = rendered_url({**env, "CLOUDBOOT_URL_SCHEME": scheme}, home)
        assert url.startswith(f"{scheme}://")
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute(SQL).fetchone()
        assert row == (user, APP_DB, True)


def test_awkward_user_and_database_names(
    pg_server: PostgresServer, pg_users: list[str], home: Path
) -> None:
    env = secret_env(pg_server, ODD_USER, ODD_PASSWORD, dbname=ODD_DB)
    render_files(env, home)
    result = psql("service=app", SQL, home=home)
    assert result.returncode == 0, describe(result)
    assert_logged_in(result.stdout, ODD_USER, ODD_DB)
    (home / ".pgpass").unlink()
    with psycopg.connect(rendered_url(env, home), connect_timeout=10) as conn:
        assert conn.execute(SQL).fetchone() == (ODD_USER, ODD_DB, True)


def test_ipv6_host(pg_server: PostgresServer, pg_users: list[str], home: Path) -> None:
    user, password = pg_users[1], NASTY_PASSWORDS[1]
    env = secret_env(pg_server, user, password, host="::1")
    render_files(env, home)
    assert "host=::1\n" in (home / ".pg_service.conf").read_text()
    result = psql("service=app", SQL, home=home)
    assert result.returncode == 0, describe(result)
    assert_logged_in(result.stdout, user, APP_DB)
    url = rendered_url(env, home)
    assert f"@[::1]:{pg_server.port}/" in url
    (home / ".pgpass").unlink()
    with psycopg.connect(url, connect_timeout=10) as conn:
        assert conn.execute(SQL).fetchone() == (user, APP_DB, True)


def test_the_files_tls_settings_are_obeyed(
    pg_server: PostgresServer, pg_users: list[str], home: Path
) -> None:
    user, password = pg_users[2], NASTY_PASSWORDS[2]
    # A CA that did not issue the server's certificate: refused.
    env = secret_env(
        pg_server, user, password, CLOUDBOOT_CA_FILE=str(pg_server.certs.other_ca_file)
    )
    render_files(env, home)
    result = psql("service=app", "select 1", home=home)
    assert result.returncode != 0
    assert "certificate verify failed" in result.stderr
    # An address the certificate does not name: refused under verify-full ...
    env = secret_env(pg_server, user, password, host=MISMATCH_HOST)
    render_files(env, home)
    result = psql("service=app", "select 1", home=home)
    assert result.returncode != 0
    assert "does not match host name" in result.stderr
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(rendered_url(env, home), connect_timeout=10).close()
    # ... and accepted under verify-ca, which checks the chain only.
    env = secret_env(pg_server, user, password, host=MISMATCH_HOST, CLOUDBOOT_SSLMODE="verify-ca")
    render_files(env, home)
    result = psql("service=app", SQL, home=home)
    assert result.returncode == 0, describe(result)
    assert_logged_in(result.stdout, user, APP_DB)


def test_a_users_own_pgpass_and_service_file_keep_their_other_entries(
    pg_server: PostgresServer, pg_users: list[str], home: Path
) -> None:
    user, password = pg_users[0], NASTY_PASSWORDS[0]
    env = secret_env(pg_server, user, password)
    # The operator's own files: another login, a comment, a catch-all that would win if
    # it came first, and another service.
    theirs = [
        "# my logins\n",
        "reporting.internal:5432:*:analyst:their\\:password\n",
        "*:*:*:*:a-wrong-catch-all\n",
    ]
    (home / ".pgpass").write_text("".join(theirs))
    (home / ".pgpass").chmod(0o600)
    (home / ".pg_service.conf").write_text("[reporting]\nhost=reporting.internal\nport=5432\n")

    dry = cloudboot(["render", "--dry-run", "--json"], env, home=home)
    assert dry.returncode == 0, describe(dry)
    rows = {row.get("kind"): row for row in json.loads(dry.stdout)["artifacts"]}
    assert rows["pgpass"]["note"] == "keeps 2 other lines"
    assert rows["pg_service"]["note"] == "keeps 1 other section"

    render_files(env, home)
    lines = (home / ".pgpass").read_text().splitlines(keepends=True)
    assert lines[1:] == theirs  # ours first, where libpq looks first; theirs kept
    result = psql("service=app", SQL, home=home)  # the catch-all does not win
    assert result.returncode == 0, describe(result)
    assert_logged_in(result.stdout, user, APP_DB)
    service = (home / ".pg_service.conf").read_text()
    assert service.startswith("[reporting]\nhost=reporting.internal\nport=5432\n[app]\n")
    # A second run leaves both as they are.
    before = (home / ".pgpass").read_bytes(), (home / ".pg_service.conf").read_bytes()
    render_files(env, home)
    assert ((home / ".pgpass").read_bytes(), (home / ".pg_service.conf").read_bytes()) == before
