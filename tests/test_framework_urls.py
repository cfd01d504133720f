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

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bootstrap.urls import (
    DIALECTS,
    Endpoint,
    UrlRefused,
    libpq_variables,
    node_pg_password_differs,
    quote_component,
    render_variables,
)
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


def _node_pg_cannot(e: Endpoint) -> bool:
    return any(c in e.dbname for c in "#?/") or node_pg_password_differs(e.password)


def _socket_localhost(e: Endpoint) -> bool:
    return e.host == "localhost"


def _laravel_cannot(e: Endpoint) -> bool:
    def decodes(value: str) -> bool:
        # A plain integer comes back as the same string; any other JSON changes.
        try:
            json.loads(value)
        except ValueError:
            return False
        plain_int = re.fullmatch(r"0|-?[1-9][0-9]{0,18}", value)
        return not (plain_int and -(2**63) <= int(value) < 2**63)

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
             (("acquireTimeout", "3000"), ("connectionLimit", "1"))),
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
    oddities: dict[str, Credential]
    """Users for the hazards: ``json`` (a password Laravel would decode), ``int`` (one it
    decodes to the same string), ``nfd`` (one NFKC changes and SASLprep prohibits: an
    emoji is unassigned in Unicode 3.2), ``hash-db`` (a database name with ``#``)."""


def _corpus(engine: str) -> list[Credential]:
    """Users with every awkward password, a TiDB-style ``prefix.root`` user, a user with
    URL delimiters in its name, databases with ``-`` ``.`` non-ASCII (and, PostgreSQL
    only, ``#?/`` and a leading ``/``), and the hosts ``::1`` and ``localhost``."""
    tag = secrets.token_hex(3)
    dbs = [f"fw-db.{tag}", f"fw_é-ü.{tag}", f"база_{tag}"]
    if engine == "postgres":
        dbs += [f"fw#db?/{tag}", f"/fw-slash.{tag}"]
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
    register_secret(MATRIX_PASSWORD)
    matrix = Credential(f"fwm_{secrets.token_hex(3)}", MATRIX_PASSWORD, f"fwm-db.{engine}")
    for cred in corpus:
        register_secret(cred.password)
    tag = secrets.token_hex(3)
    oddities = {
        "json": Credential(f"fwjson_{tag}", "1e3", matrix.dbname),
        "nfd": Credential(f"fwnfd_{tag}", "caf\u00e9-e\u0301-\U0001f511", matrix.dbname),
        "int": Credential(f"fwint_{tag}", "4815162342", matrix.dbname),
        "nfc-ok": Credential(f"fwnfc_{tag}", "cafe\u0301-\u00bd", matrix.dbname),
        "hash-db": Credential(f"fwhash_{tag}", MATRIX_PASSWORD, f"fw#hash_{tag}"),
    }
    everyone = (*corpus, matrix, *oddities.values())
    for server in (good, tls_off):
        server.create_users([(c.user, c.password) for c in everyone])
        for dbname in {c.dbname for c in everyone}:
            server.create_database(dbname)
    return Servers(certs, good, tls_off, tuple(corpus), matrix, oddities)


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


# --- why: what the refusals and the dialects' choices guard against ----------------------


@dataclass(frozen=True)
class Hazard:
    """A URL a careless renderer would write, and what the real client then does."""

    what: str
    language: str
    client: str
    engine: str
    url: Callable[[Servers], str]
    outcome: str
    """``plaintext``: logs in without TLS; ``login``: logs in (where it must not);
    ``refused``: cannot log in (where it should); ``typeerror``: rejects the URL."""
    env: tuple[tuple[str, str], ...] = ()


def _q(value: str) -> str:
    return quote_component(value)


def _hazard_url(
    scheme: str, *, tls_off: bool = False, host: str = HOST, query: str = "", cred: str = "m"
) -> Callable[[Servers], str]:
    def build(servers: Servers) -> str:
        c = servers.matrix if cred == "m" else servers.oddities[cred]
        port = (servers.tls_off if tls_off else servers.good).port
        ca = _q(str(servers.certs.ca_file))
        q = query.replace("{ca}", ca)
        return f"{scheme}://{_q(c.user)}:{_q(c.password)}@{host}:{port}/{_q(c.dbname)}{q}"

    return build


_MYSQL_URI = "?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"
HAZARDS = (
    # Today's mysql:// (MySQL URI spelling) says VERIFY_IDENTITY; these clients ignore it.
    Hazard("mysql2 ignores ssl-mode", "node", "mysql2", "mysql",
           _hazard_url("mysql", tls_off=True, query=_MYSQL_URI), "plaintext"),
    Hazard("Prisma's adapter-mariadb ignores ssl-mode", "node", "prisma-mariadb", "mysql",
           _hazard_url("mysql", tls_off=True, query=_MYSQL_URI), "plaintext"),
    Hazard("Laravel ignores ssl-mode", "php", "", "mysql",
           _hazard_url("mysql", tls_off=True, query=_MYSQL_URI), "plaintext"),
    Hazard("dj-database-url passes ssl-mode to MySQLdb", "python", "django", "mysql",
           _hazard_url("mysql", query=_MYSQL_URI), "typeerror"),
    Hazard("the mysql2 gem ignores ssl_mode and sslca", "ruby", "", "mysql",
           _hazard_url("mysql2", tls_off=True, query="?ssl_mode=verify_identity&sslca={ca}"),
           "plaintext"),
    Hazard("the mysql2 gem ignores sslverify", "ruby", "", "mysql",
           _hazard_url("mysql2", host=MISMATCH_HOST, query="?sslverify=true&sslca={ca}"),
           "login"),
    # MySQLdb on MariaDB Connector/C: REQUIRED falls back, VERIFY_CA checks the host.
    Hazard("MySQLdb ssl_mode=REQUIRED falls back to plaintext", "python", "sqlalchemy",
           "mysql", _hazard_url("mysql+mysqldb", tls_off=True,
                                query="?ssl_mode=REQUIRED&ssl_ca={ca}"), "plaintext"),
    Hazard("MySQLdb ssl_mode=VERIFY_CA checks the host name", "python", "sqlalchemy",
           "mysql", _hazard_url("mysql+mysqldb", host=MISMATCH_HOST,
                                query="?ssl_mode=VERIFY_CA&ssl_ca={ca}"), "refused"),
    # mysql2 checks the identity of host names only.
    Hazard("mysql2 verifyIdentity skips an IP address", "node", "mysql2", "mysql",
           _hazard_url("mysql", host=MISMATCH_HOST,
                       query="?ssl=" + _q('{"rejectUnauthorized":true,"verifyIdentity":true}')),
           "login", (("NODE_EXTRA_CA_CERTS", "{ca_file}"),)),
    # PyMySQL without any ssl key tries TLS ("preferred"), so disable needs ssl_disabled.
    Hazard("PyMySQL without ssl keys still uses TLS", "python", "sqlalchemy", "mysql",
           _hazard_url("mysql+pymysql"), "login"),
    # node-postgres: verify-ca means verify-full without uselibpqcompat.
    Hazard("node-postgres verify-ca checks the host name", "node", "pg", "postgres",
           _hazard_url("postgresql", host=NODE_MISMATCH,
                       query="?sslmode=verify-ca&sslrootcert={ca}"), "refused"),
    Hazard("node-postgres reads %23 in a database name as is", "node", "pg", "postgres",
           _hazard_url("postgresql", cred="hash-db", query="?sslmode=disable"), "refused"),
    Hazard("node-postgres sends the password without SASLprep", "node", "pg", "postgres",
           _hazard_url("postgresql", host="localhost", cred="nfd",
                       query="?sslmode=verify-full&sslrootcert={ca}"), "refused"),
    Hazard("node-postgres normalizes like the server when SASLprep accepts", "node", "pg",
           "postgres", _hazard_url("postgresql", host="localhost", cred="nfc-ok",
                                   query="?sslmode=verify-full&sslrootcert={ca}"), "login"),
    # Laravel json_decodes every URL part.
    Hazard("Laravel JSON-decodes a password", "php", "", "postgres",
           _hazard_url("pgsql", cred="json", query="?sslmode=verify-full&sslrootcert={ca}"),
           "refused"),
    Hazard("Laravel's decoded integer password still logs in", "php", "", "postgres",
           _hazard_url("pgsql", cred="int", query="?sslmode=verify-full&sslrootcert={ca}"),
           "login"),
    Hazard("Laravel keeps the brackets of an IPv6 host", "php", "", "postgres",
           _hazard_url("pgsql", host="[::1]", query="?sslmode=verify-full&sslrootcert={ca}"),
           "refused"),
    # "localhost" is the Unix socket to these clients: the TCP server is never asked.
    Hazard("MySQLdb takes localhost for the socket", "python", "sqlalchemy", "mysql",
           _hazard_url("mysql+mysqldb", tls_off=True, host="localhost",
                       query="?ssl_mode=DISABLED"), "refused"),
    Hazard("the mysql2 gem takes localhost for the socket", "ruby", "", "mysql",
           _hazard_url("mysql2", tls_off=True, host="localhost"), "refused"),
    Hazard("PHP's mysqlnd takes localhost for the socket", "php", "", "mysql",
           _hazard_url("mysql", tls_off=True, host="localhost"), "refused"),
    Hazard("the same logs in over TCP with 127.0.0.1", "php", "", "mysql",
           _hazard_url("mysql", tls_off=True), "plaintext"),
    # PyMySQL sends a str password as Latin-1.
    Hazard("PyMySQL cannot send a non-ASCII password", "python", "sqlalchemy", "mysql",
           _hazard_url("mysql+pymysql", cred="nfd", query="?ssl_ca={ca}"), "refused"),
)  # fmt: skip


def _expect(hazard: Hazard, answer: dict[str, Any]) -> str | None:
    got = "refused" if not answer["ok"] else ("plaintext" if answer["ssl"] is None else "login")
    if hazard.outcome == "typeerror":
        got = "typeerror" if "TypeError" in str(answer.get("error")) else got
    return None if got == hazard.outcome else f"{hazard.what}: {got} ({answer.get('error')})"


def test_what_the_refusals_guard_against(
    pg_servers: Servers, mariadb_servers: Servers, home: Path
) -> None:
    """The measured behaviour behind each refusal and choice in ``bootstrap.urls``: if a
    client ever changes, this test says which rule to revisit."""
    by_client: dict[tuple[str, str], list[Hazard]] = {}
    for hazard in HAZARDS:
        by_client.setdefault((hazard.language, hazard.client), []).append(hazard)
    problems = []
    for (language, client), hazards in by_client.items():
        cases = []
        for hazard in hazards:
            servers = pg_servers if hazard.engine == "postgres" else mariadb_servers
            env = {n: v.replace("{ca_file}", str(servers.certs.ca_file)) for n, v in hazard.env}
            env["DATABASE_URL"] = hazard.url(servers)
            cases.append(Case(hazard.engine, env, "DATABASE_URL"))
        answers = run_cases(command(language, client), cases, home=home)
        problems += [p for h, a in zip(hazards, answers, strict=True) if (p := _expect(h, a))]
    assert not problems, "\n".join(problems)
