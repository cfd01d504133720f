"""Each URL dialect of ``bootstrap.urls`` is proved by the framework's own client logging in.

For every consumer (the real client, pinned: npm lockfile, PyPI dev extras, Debian):

* the credential corpus under ``verify-full`` on the TLS-only servers: every case the
  module renders logs in as exactly that user into exactly that database over TLS (the
  server says so); every case it refuses is one the test's table says that consumer
  cannot carry;
* every sslmode against the good server, a CA the server's certificate does not chain to,
  a host name the certificate does not name, and a server without TLS: the client
  connects exactly where the sslmode says it must and refuses everywhere else. Where the
  module refuses a mode for a consumer, the test asserts the refusal.

One process per consumer reads all its cases (``frameworkrun``).
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bootstrap.urls import DIALECTS, Endpoint, UrlRefused, libpq_variables, render_variables
from frameworkrun import Case, command, run_cases
from leakguard import register_secret
from servers import (
    HOST,
    MISMATCH_HOST,
    NASTY_PASSWORDS,
    SECRET_PASSWORD,
    Certificates,
    MariaDBServer,
    PostgresServer,
    has_ipv6_loopback,
)

MODES = ("verify-full", "verify-ca", "require", "disable")
ALL_MODES = frozenset(MODES)
SCENARIOS = ("good", "other-ca", "host-mismatch", "tls-off")
# Whether a client must log in, by sslmode and scenario (the matrix). A server
# without TLS refuses nothing under disable; the TLS-only servers refuse a plaintext login.
MATRIX_PASSWORD = "m:@/?#%41+ 'q' \"d\" \\ $x `c` ;"
"""ASCII (PyMySQL sends a str password as Latin-1), every URL delimiter and quote."""
MUST_CONNECT = {
    "verify-full": {"good"},
    "verify-ca": {"good", "host-mismatch"},
    "require": {"good", "other-ca", "host-mismatch"},
    "disable": {"tls-off"},
}


@dataclass(frozen=True)
class Credential:
    user: str
    password: str
    dbname: str
    host: str | None = None
    """``None``: the consumer's usual host; else this host (``::1``, ``localhost``)."""


@dataclass(frozen=True)
class Consumer:
    """A real client and the dialect that renders for it."""

    name: str
    dialect: str | None
    """``None``: libpq's own variables (:func:`libpq_variables`)."""
    engine: str
    language: str
    client: str
    modes: frozenset[str]
    """The sslmodes the module renders for it (the others it refuses)."""
    cannot_carry: Callable[[Endpoint], bool] = lambda _: False
    """The corpus inputs the module refuses for it (the README row says why)."""
    host: str = HOST
    mismatch_host: str = MISMATCH_HOST
    extra_query: tuple[tuple[str, str], ...] = ()


def _db_has(chars: str) -> Callable[[Endpoint], bool]:
    return lambda e: any(c in e.dbname for c in chars)


def _node_pg_cannot(e: Endpoint) -> bool:
    # SASLprep: PostgreSQL hashes the NFKC form; Node's pg sends the password as it is.
    return any(c in e.dbname for c in "#?/") or unicodedata.normalize("NFKC", e.password) != (
        e.password
    )


def _socket_localhost(e: Endpoint) -> bool:
    return e.host == "localhost"


def _laravel_cannot(e: Endpoint) -> bool:
    import json  # noqa: PLC0415

    def decodes(value: str) -> bool:
        try:
            json.loads(value)
        except ValueError:
            return False
        return True

    return (
        ":" in e.host
        or any(decodes(v) for v in (e.user, e.password, e.dbname))
        or any(c in e.dbname for c in ";'\\")
        or (e.engine == "mysql" and _socket_localhost(e))
    )


# Node clients resolve this name through the harness's DNS stub (mysql2 checks host
# names, never IP addresses); "localhost" is named by the certificate.
NODE_HOST, NODE_MISMATCH = "localhost", "mismatch.test"
VERIFY_FULL_ONLY = frozenset({"verify-full", "disable"})

CONSUMERS = (
    Consumer("node-postgres", "node-postgres", "postgres", "node", "pg", ALL_MODES,
             _node_pg_cannot, NODE_HOST, NODE_MISMATCH),
    Consumer("prisma-adapter-pg", "prisma", "postgres", "node", "prisma-pg", ALL_MODES,
             _node_pg_cannot, NODE_HOST, NODE_MISMATCH),
    Consumer("prisma-adapter-mariadb", "prisma", "mysql", "node", "prisma-mariadb",
             VERIFY_FULL_ONLY, lambda _: False, NODE_HOST, NODE_MISMATCH,
             # A refusal waits for the pool's acquireTimeout (10 s by default).
             (("acquireTimeout", "3000"),)),
    Consumer("mysql2", "mysql2", "mysql", "node", "mysql2",
             frozenset({"verify-full", "require", "disable"}),
             lambda e: e.host == "::1", NODE_HOST, NODE_MISMATCH),
    Consumer("psycopg", "libpq", "postgres", "python", "psycopg", ALL_MODES),
    Consumer("libpq-variables", None, "postgres", "python", "libpq-env", ALL_MODES),
    Consumer("sqlalchemy-psycopg", "sqlalchemy", "postgres", "python", "sqlalchemy", ALL_MODES),
    Consumer("sqlalchemy-pymysql", "sqlalchemy", "mysql", "python", "sqlalchemy", ALL_MODES,
             lambda e: not e.password.isascii()),
    Consumer("sqlalchemy-mysqldb", "sqlalchemy-mysqldb", "mysql", "python", "sqlalchemy",
             VERIFY_FULL_ONLY, _socket_localhost),
    Consumer("django-postgres", "django", "postgres", "python", "django", ALL_MODES),
    Consumer("django-mysql", "django", "mysql", "python", "django", VERIFY_FULL_ONLY,
             _socket_localhost),
    Consumer("django-environ-postgres", "django-environ", "postgres", "python",
             "django-environ", ALL_MODES, lambda e: e.dbname.startswith("/")),
    Consumer("django-environ-mysql", "django-environ", "mysql", "python", "django-environ",
             frozenset({"disable"}), _socket_localhost),
    Consumer("activerecord-postgresql", "rails", "postgres", "ruby", "", ALL_MODES),
    Consumer("activerecord-mysql2", "rails", "mysql", "ruby", "", frozenset({"disable"}),
             _socket_localhost),
    Consumer("laravel-pgsql", "laravel", "postgres", "php", "", ALL_MODES, _laravel_cannot),
    Consumer("laravel-mysql", "laravel", "mysql", "php", "",
             frozenset({"verify-full", "require", "disable"}), _laravel_cannot),
)  # fmt: skip


@dataclass(frozen=True)
class Servers:
    certs: Certificates
    good: PostgresServer | MariaDBServer
    tls_off: PostgresServer | MariaDBServer
    corpus: tuple[Credential, ...]
    matrix: Credential


def _corpus(engine: str) -> list[Credential]:
    """Users with every awkward password, a TiDB-style ``prefix.root`` user, a user with
    URL delimiters in its name, databases with ``-`` ``.`` non-ASCII (and, PostgreSQL
    only, ``#?/``), and the hosts ``::1`` and ``localhost``."""
    tag = secrets.token_hex(3)
    dbs = [f"fw-db.{tag}", f"fw_é-ü.{tag}", f"база_{tag}"]
    if engine == "postgres":
        dbs.append(f"fw#db?/{tag}")
    creds = [
        Credential(f"fw{i}_{tag}", password, dbs[i % len(dbs)])
        for i, password in enumerate(NASTY_PASSWORDS)
    ]
    creds.append(Credential(f"4mQx{tag}.root", "tidb-style user", dbs[0]))
    creds.append(Credential(f"u:s@r/?#%+ é{tag}", "a plain one: ok", dbs[1]))
    creds.append(Credential(f"fwlong_{tag}", "p" * 120 + ":@/?#%+ é", dbs[0]))
    if has_ipv6_loopback():
        creds.append(Credential(f"fwv6_{tag}", SECRET_PASSWORD, dbs[1], host="::1"))
    creds.append(Credential(f"fwlocal_{tag}", SECRET_PASSWORD, dbs[2], host="localhost"))
    return creds


def _set_up(
    certs: Certificates,
    good: PostgresServer | MariaDBServer,
    tls_off: PostgresServer | MariaDBServer,
) -> Servers:
    engine = "postgres" if isinstance(good, PostgresServer) else "mysql"
    corpus = _corpus(engine)
    # On both: a consumer that can only be given disable logs in on the TLS-off one.
    for server in (good, tls_off):
        for cred in corpus:
            register_secret(cred.password)
            server.create_user(cred.user, cred.password)
        for dbname in {c.dbname for c in corpus}:
            server.create_database(dbname)
    register_secret(MATRIX_PASSWORD)
    matrix = Credential(f"fwm_{secrets.token_hex(3)}", MATRIX_PASSWORD, f"fwm-db.{engine}")
    for server in (good, tls_off):
        server.create_user(matrix.user, matrix.password)
        server.create_database(matrix.dbname)
    return Servers(certs, good, tls_off, tuple(corpus), matrix)


@pytest.fixture(scope="module")
def pg_servers(
    certs: Certificates, pg_server: PostgresServer, pg_server_tls_off: PostgresServer
) -> Servers:
    return _set_up(certs, pg_server, pg_server_tls_off)


@pytest.fixture(scope="module")
def mariadb_servers(
    certs: Certificates, mariadb_server: MariaDBServer, mariadb_server_tls_off: MariaDBServer
) -> Servers:
    return _set_up(certs, mariadb_server, mariadb_server_tls_off)


@dataclass(frozen=True)
class Expectation:
    what: str
    endpoint: Endpoint
    connect: bool


def _render(consumer: Consumer, endpoint: Endpoint, home: Path) -> Case:
    if consumer.dialect is None:
        passfile = home / f"pgpass-{secrets.token_hex(4)}"
        fields = (endpoint.host, str(endpoint.port), endpoint.dbname, endpoint.user)
        line = ":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in (*fields,))
        password = endpoint.password.replace("\\", "\\\\").replace(":", "\\:")
        passfile.write_text(f"{line}:{password}\n")
        passfile.chmod(0o600)
        return Case(endpoint.engine, libpq_variables(endpoint, str(passfile)), None)
    rendered = render_variables(
        consumer.dialect, endpoint, url_env="DATABASE_URL", extra_query=consumer.extra_query
    )
    assert rendered.secret == {"DATABASE_URL"}
    return Case(endpoint.engine, rendered.variables, "DATABASE_URL")


def _endpoint(
    consumer: Consumer, servers: Servers, cred: Credential, *, sslmode: str = "verify-full"
) -> Endpoint:
    ca = str(servers.certs.ca_file) if sslmode in ("verify-full", "verify-ca") else None
    return Endpoint(
        engine=consumer.engine,  # type: ignore[arg-type]
        host=cred.host or consumer.host,
        port=servers.good.port,
        dbname=cred.dbname,
        user=cred.user,
        password=cred.password,
        sslmode=sslmode,  # type: ignore[arg-type]
        ca_file=ca,
    )


def _scenario(consumer: Consumer, servers: Servers, endpoint: Endpoint, scenario: str) -> Endpoint:
    if scenario == "other-ca" and endpoint.ca_file:
        return replace(endpoint, ca_file=str(servers.certs.other_ca_file))
    if scenario == "host-mismatch":
        return replace(endpoint, host=consumer.mismatch_host)
    if scenario == "tls-off":
        return replace(endpoint, port=servers.tls_off.port)
    return endpoint


def _check(expected: Expectation, answer: dict[str, Any]) -> str | None:
    """What is wrong with ``answer``, or ``None``."""
    if not expected.connect:
        return f"{expected.what}: logged in but must refuse" if answer["ok"] else None
    if not answer["ok"]:
        return f"{expected.what}: refused but must log in: {answer['error']}"
    wanted_tls = expected.endpoint.sslmode != "disable"
    got = (answer["user"], answer["database"], answer["ssl"] is not None)
    if got != (expected.endpoint.user, expected.endpoint.dbname, wanted_tls):
        return f"{expected.what}: the server saw user/database/TLS {got}"
    return None


@pytest.fixture
def servers_for(
    request: pytest.FixtureRequest,
) -> Callable[[str], Servers]:
    def get(engine: str) -> Servers:
        name = "pg_servers" if engine == "postgres" else "mariadb_servers"
        servers: Servers = request.getfixturevalue(name)
        return servers

    return get


@pytest.mark.timeout(300)
@pytest.mark.parametrize("consumer", CONSUMERS, ids=[c.name for c in CONSUMERS])
def test_the_real_client_logs_in_exactly_as_rendered(
    consumer: Consumer, servers_for: Callable[[str], Servers], home: Path
) -> None:
    servers = servers_for(consumer.engine)
    expectations: list[Expectation] = []
    cases: list[Case] = []
    problems: list[str] = []

    def add(what: str, endpoint: Endpoint, connect: bool, refused_ok: bool) -> None:
        try:
            case = _render(consumer, endpoint, home)
        except UrlRefused as refusal:
            if not refused_ok:
                problems.append(f"{what}: the module refuses it ({refusal})")
            return
        if refused_ok:
            problems.append(f"{what}: rendered, but the table says the module refuses it")
            return
        expectations.append(Expectation(what, endpoint, connect))
        cases.append(case)

    # The corpus under the strongest sslmode the module renders for this consumer.
    corpus_mode = next(m for m in MODES if m in consumer.modes)
    for index, cred in enumerate(servers.corpus):
        endpoint = _endpoint(consumer, servers, cred, sslmode=corpus_mode)
        if corpus_mode == "disable":
            endpoint = replace(endpoint, port=servers.tls_off.port)
        add(f"corpus #{index}", endpoint, True, consumer.cannot_carry(endpoint))
    for sslmode in MODES:
        base = _endpoint(consumer, servers, servers.matrix, sslmode=sslmode)
        for scenario in SCENARIOS:
            endpoint = _scenario(consumer, servers, base, scenario)
            connect = scenario in MUST_CONNECT[sslmode]
            add(f"{sslmode} x {scenario}", endpoint, connect, sslmode not in consumer.modes)

    argv = command(consumer.language, consumer.client)
    answers = run_cases(argv, cases, home=home)
    problems += [p for e, a in zip(expectations, answers, strict=True) if (p := _check(e, a))]
    assert not problems, f"{consumer.name}:\n" + "\n".join(problems)
    # Something was really tried: at least the good verify-full (or disable) login.
    assert any(e.connect for e in expectations)


def test_every_dialect_is_proved_or_is_an_alias() -> None:
    proved = {c.dialect for c in CONSUMERS}
    aliases = {"postgresql", "postgres", "mysql+pymysql", "ecto", "mysql"}
    assert set(DIALECTS) == proved - {None} | aliases
