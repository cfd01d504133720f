"""Fixtures: TLS-only database servers, an isolated environment, and the leak guard.

Session-scoped (started once, removed at the end):
    ``certs`` -> ``Certificates``; ``pg_server`` -> ``PostgresServer``;
    ``mariadb_server`` -> ``MariaDBServer``; ``pg_server_tls_off`` and
    ``mariadb_server_tls_off``: the same without any TLS (for "a client that must refuse
    a server without TLS").
Per test:
    ``make_pg_server(*, start=True)`` / ``make_mariadb_server(*, start=True)``: private
    servers a test may stop, restart or start late; removed after the test.
    ``tasks`` -> ``imagerun.Tasks``: image tasks, stopped after the test.
    ``secret_password``: a 100+ character password full of awkward characters, known to
    the leak guard. ``NASTY_PASSWORDS`` (from ``servers``) are registered too.
Automatic for every test:
    a fresh empty ``HOME`` and none of the variables that would steer cloudboot or a
    database client (see ``ISOLATED_PREFIXES``/``ISOLATED_NAMES``/``ISOLATED_SUFFIXES``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import bootstrap.logs
import servers
from bootproc import Target, make_target
from imagerun import Tasks
from leakguard import register_secret
from servers import (
    NASTY_PASSWORDS,
    SECRET_PASSWORD,
    Certificates,
    MakeMariaDBServer,
    MakePostgresServer,
    MariaDBServer,
    PostgresServer,
    make_certificates,
)

pytest_plugins = ["pytester", "leakguard"]

# A test that uses one of these starts (or shares) a throwaway database server: marked
# ``server`` so that ``make test-fast`` can leave it out.
# (Fixtures that pick a server with ``request.getfixturevalue`` are named too: pytest
# cannot see through them.)
SERVER_FIXTURES = frozenset(
    {
        "pg_server",
        "mariadb_server",
        "make_pg_server",
        "make_mariadb_server",
        "private_servers",
        "pg_server_tls_off",
        "mariadb_server_tls_off",
        "target",
        "login",
        "stopped_target",
        "veth_target",  # test_faults: a server behind a veth pair
        "servers_for",  # test_framework_urls: getfixturevalue of the engine's servers
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server: needs a throwaway database server (make test-fast leaves it out)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures: a server it makes without the mark fails it (servers.py).
    marked = item.get_closest_marker("server") is not None
    servers.starts_allowed = lambda: marked


for _password in NASTY_PASSWORDS:
    register_secret(_password)

ISOLATED_PREFIXES = ("PG", "DB_", "WORDPRESS_", "CLOUDBOOT_", "MYSQL_", "MARIADB_")
ISOLATED_NAMES = ("DATABASE_URL", "SSL_CERT_FILE", "SSL_CERT_DIR")
ISOLATED_SUFFIXES = ("_SECRET",)


def is_isolated_variable(name: str) -> bool:
    """Whether the autouse fixture removes ``name`` from the environment of each test."""
    return (
        name.startswith(ISOLATED_PREFIXES)
        or name in ISOLATED_NAMES
        or name.endswith(ISOLATED_SUFFIXES)
    )


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    for name in list(os.environ):
        if is_isolated_variable(name):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """An in-process ``main()`` points cloudboot's logging at this test's captured
    stderr, which is closed afterwards: give every later test the configuration it had."""
    saved = bootstrap.logs._config
    yield
    bootstrap.logs._config = saved


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def pg_server(certs: Certificates) -> Iterator[PostgresServer]:
    with PostgresServer(certs) as server:
        register_secret(server.admin_password)
        server.start()
        yield server


@pytest.fixture(scope="session")
def mariadb_server(certs: Certificates) -> Iterator[MariaDBServer]:
    with MariaDBServer(certs) as server:
        server.start()
        yield server


@pytest.fixture(scope="session")
def pg_server_tls_off(certs: Certificates) -> Iterator[PostgresServer]:
    """A PostgreSQL that offers no TLS at all (plain ``host`` lines, ``ssl = off``)."""
    with PostgresServer(certs, tls=False) as server:
        register_secret(server.admin_password)
        server.start()
        yield server


@pytest.fixture(scope="session")
def mariadb_server_tls_off(certs: Certificates) -> Iterator[MariaDBServer]:
    """A MariaDB that offers no TLS at all (``--skip-ssl``)."""
    with MariaDBServer(certs, tls=False) as server:
        server.start()
        yield server


@pytest.fixture
def make_pg_server(certs: Certificates) -> Iterator[MakePostgresServer]:
    made: list[PostgresServer] = []

    def make(*, start: bool = True) -> PostgresServer:
        server = PostgresServer(certs)
        made.append(server)
        register_secret(server.admin_password)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.cleanup()


@pytest.fixture
def make_mariadb_server(certs: Certificates) -> Iterator[MakeMariaDBServer]:
    made: list[MariaDBServer] = []

    def make(*, start: bool = True) -> MariaDBServer:
        server = MariaDBServer(certs)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.cleanup()


@pytest.fixture
def tasks(tmp_path: Path) -> Iterator[Tasks]:
    """Image tasks (an image's ENTRYPOINT + CMD as processes); all stopped afterwards."""
    started = Tasks(tmp_path / "logs")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def secret_password() -> str:
    return register_secret(SECRET_PASSWORD)


@pytest.fixture
def home() -> Path:
    """The test's fresh, empty ``HOME``."""
    return Path(os.environ["HOME"])


@pytest.fixture(params=["postgres", "mysql"])
def target(
    request: pytest.FixtureRequest,
    pg_server: PostgresServer,
    mariadb_server: MariaDBServer,
    secret_password: str,
) -> Target:
    """A login on the session's server of each engine (the test runs once per engine)."""
    server = pg_server if request.param == "postgres" else mariadb_server
    return make_target(request.param, server, secret_password)
