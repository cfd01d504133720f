"""MySQL-family readers of what cloudboot renders, against the throwaway MariaDB that
accepts only TLS (``require_secure_transport=ON``).

* the real ``mariadb`` client logs in over verified TLS with nothing but the rendered
  defaults file (``--defaults-file``), for every password of ``NASTY_PASSWORDS``;
* PyMySQL logs in with the ``mysql+pymysql://`` URL read the way SQLAlchemy reads it
  (its URL pattern, ``unquote``, the ``ssl_*`` query keys as the ``ssl`` dict, the
  password as UTF-8 bytes);
* the ``mysql://`` URL, split and percent-decoded, gives back exactly the parts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pytest

from bootproc import run as cloudboot
from bootstrap import ConfigError
from factories import rds_secret, url_of
from readers import describe, mariadb_with_defaults, parse_sqlalchemy_url
from servers import HOST, MISMATCH_HOST, NASTY_PASSWORDS, MariaDBServer, mysql_literal

APP_DB = "cloudboot_app"
IDS = [f"password{index}" for index in range(len(NASTY_PASSWORDS))]
TLS_SQL = (
    "SELECT CURRENT_USER(), DATABASE(), VARIABLE_VALUE <> '' "
    "FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'"
)


@pytest.fixture(scope="module")
def mysql_users(mariadb_server: MariaDBServer) -> Iterator[list[str]]:
    """One account per nasty password (``cb_user_<n>@%``) and the app database, made in
    one admin session and dropped after the module (an account for ``%`` changes how the
    shared server answers other tests' logins)."""
    users = [f"cb_user_{index}" for index in range(len(NASTY_PASSWORDS))]
    statements = [f"CREATE DATABASE `{APP_DB}`;"]
    for user, password in zip(users, NASTY_PASSWORDS, strict=True):
        account = f"{mysql_literal(user)}@'%'"
        statements.append(f"CREATE USER {account} IDENTIFIED BY {mysql_literal(password)};")
        statements.append(f"GRANT ALL PRIVILEGES ON `{APP_DB}`.* TO {account};")
    mariadb_server.admin_sql(
        "\n".join(statements),
        redact=(*NASTY_PASSWORDS, *(mysql_literal(p) for p in NASTY_PASSWORDS)),
    )
    yield users
    drops = [f"DROP USER IF EXISTS {mysql_literal(user)}@'%';" for user in users]
    # FLUSH PRIVILEGES: after a '%' account existed, MariaDB keeps letting every host try
    # a password (1045 rather than 1130) until the grant tables are reloaded.
    mariadb_server.admin_sql(
        "\n".join([*drops, f"DROP DATABASE IF EXISTS `{APP_DB}`;", "FLUSH PRIVILEGES;"])
    )


def secret_env(
    server: MariaDBServer, user: str, password: str, *, host: str = HOST, **settings: str
) -> dict[str, str]:
    secret = rds_secret(
        host=host,
        port=str(server.port),
        dbname=APP_DB,
        username=user,
        password=password,
        engine="mariadb",
        dbClusterIdentifier=None,
    )
    return {"DB_SECRET": secret, "CLOUDBOOT_CA_FILE": str(server.ca_file), **settings}


def rendered_url(env: Mapping[str, str], home: Path, scheme: str) -> str:
    environ = {**env, "HOME": str(home), "CLOUDBOOT_URL_SCHEME": scheme}
    return url_of(environ)


def pymysql_query(kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    conn = pymysql.connect(**kwargs)
    try:
        with conn.cursor() as cursor:
            cursor.execute(TLS_SQL)
            row = cursor.fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("index", range(len(NASTY_PASSWORDS)), ids=IDS)
def test_mariadb_client_and_pymysql_log_in(
    mariadb_server: MariaDBServer, mysql_users: list[str], home: Path, index: int
) -> None:
    user, password = mysql_users[index], NASTY_PASSWORDS[index]
    env = secret_env(mariadb_server, user, password, CLOUDBOOT_MY_CNF=str(home / "my.cnf"))
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 0, describe(result)
    my_cnf = home / "my.cnf"
    assert sorted(p.name for p in home.iterdir()) == ["my.cnf"]
    assert my_cnf.stat().st_mode & 0o777 == 0o600

    client = mariadb_with_defaults(my_cnf, TLS_SQL, home=home)
    assert client.returncode == 0, describe(client)
    assert client.stdout.split("\n")[0].split("\t") == [f"{user}@%", APP_DB, "1"]

    if not password.isascii():
        # SQLAlchemy hands PyMySQL the password as str, which PyMySQL sends as Latin-1:
        # such a URL could never log in, so cloudboot refuses it for this dialect.
        with pytest.raises(ConfigError, match="Latin-1"):
            rendered_url(env, home, "mysql+pymysql")
        return
    url = rendered_url(env, home, "mysql+pymysql")
    parsed = parse_sqlalchemy_url(url)
    assert (parsed.username, parsed.password) == (user, password)
    kwargs = parsed.pymysql_kwargs()
    assert kwargs["ssl"] == {"ca": str(mariadb_server.ca_file)}  # chain and host name
    assert pymysql_query(kwargs) == (f"{user}@%", APP_DB, 1)


def test_mysql_url_decodes_to_exactly_the_parts(mariadb_server: MariaDBServer, home: Path) -> None:
    for password in NASTY_PASSWORDS:
        env = secret_env(mariadb_server, "us:er@x/é", password, host="::1")
        url = rendered_url(env, home, "mysql")
        parts = urlsplit(url)
        assert parts.scheme == "mysql"
        assert (parts.hostname, parts.port) == ("::1", mariadb_server.port)
        assert unquote(parts.username or "") == "us:er@x/é"
        assert unquote(parts.password or "") == password
        assert unquote(parts.path) == f"/{APP_DB}"
        assert parse_qsl(parts.query, strict_parsing=True) == [
            ("ssl-mode", "VERIFY_IDENTITY"),
            ("ssl-ca", str(mariadb_server.ca_file)),
        ]


def test_the_tls_settings_are_obeyed(
    mariadb_server: MariaDBServer, mysql_users: list[str], home: Path
) -> None:
    user, password = mysql_users[1], NASTY_PASSWORDS[1]
    my_cnf = home / "my.cnf"
    # The defaults file with a CA that did not issue the server's certificate: refused.
    other_ca = str(mariadb_server.certs.other_ca_file)
    env = secret_env(
        mariadb_server, user, password, CLOUDBOOT_MY_CNF=str(my_cnf), CLOUDBOOT_CA_FILE=other_ca
    )
    assert cloudboot(["render"], env, home=home).returncode == 0
    result = mariadb_with_defaults(my_cnf, "SELECT 1", home=home)
    assert result.returncode != 0
    assert "certificate" in result.stderr.lower()
    # An address the certificate does not name: the client and PyMySQL refuse it under
    # verify-full ...
    env = secret_env(
        mariadb_server, user, password, host=MISMATCH_HOST, CLOUDBOOT_MY_CNF=str(my_cnf)
    )
    assert cloudboot(["render"], env, home=home).returncode == 0
    result = mariadb_with_defaults(my_cnf, "SELECT 1", home=home)
    assert result.returncode != 0
    kwargs = parse_sqlalchemy_url(rendered_url(env, home, "mysql+pymysql")).pymysql_kwargs()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql_query(kwargs)
    # ... PyMySQL accepts it under verify-ca (chain only) ...
    verify_ca = {**env, "CLOUDBOOT_SSLMODE": "verify-ca"}
    kwargs = parse_sqlalchemy_url(rendered_url(verify_ca, home, "mysql+pymysql")).pymysql_kwargs()
    assert kwargs["ssl"] == {"ca": str(mariadb_server.ca_file), "check_hostname": False}
    assert pymysql_query(kwargs) == (f"{user}@%", APP_DB, 1)
    # ... and under require TLS is still on, with nothing checked.
    require = {**env, "CLOUDBOOT_SSLMODE": "require"}
    kwargs = parse_sqlalchemy_url(rendered_url(require, home, "mysql+pymysql")).pymysql_kwargs()
    assert kwargs["ssl"] == {"check_hostname": False}
    assert pymysql_query(kwargs) == (f"{user}@%", APP_DB, 1)
