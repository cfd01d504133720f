"""The variables each family of database clients reads, in the spelling it really honours.

A *dialect* names a consumer family (``node-postgres``, ``django``, ``laravel``, …).
:func:`render_variables` turns one :class:`Endpoint` into the variables that consumer
reads: a URL whose TLS parameters that client obeys, plus, where a URL cannot say
everything, the client's own variables (``NODE_EXTRA_CA_CERTS`` for Node's TLS stack).
Where neither can make the client verify (or even require) TLS the way the sslmode asks,
or cannot carry an input byte for byte, it raises :class:`UrlRefused` with the reason:
never a URL that silently logs in unverified or in plaintext.

Every rule here was measured with the real client against TLS-only and TLS-off servers
(``tests/test_framework_urls.py``; the README's "URL dialects" section has the matrix).
Pure: no I/O, standard library only.
"""

from __future__ import annotations

import json
import re
import stringprep
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

Engine = Literal["postgres", "mysql"]
SslMode = Literal["verify-full", "verify-ca", "require", "disable"]
VERIFYING: frozenset[str] = frozenset({"verify-full", "verify-ca"})


class UrlRefused(ValueError):
    """This consumer cannot be given this combination safely. The message gives the
    reason and names fields, never a value."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, as the lead's resolved connection target gives it."""

    engine: Engine
    host: str
    """A host name, an IPv4 or an IPv6 literal (no brackets)."""
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    sslmode: SslMode
    ca_file: str | None
    """The real path of the CA bundle; ``None`` under ``require``/``disable``."""


@dataclass(frozen=True)
class Rendered:
    """The variables to give the application, and which of them hold the password."""

    variables: dict[str, str]
    secret: frozenset[str]


Query = list[tuple[str, str]]


@dataclass(frozen=True)
class Dialect:
    """One consumer family: the engines it serves and how it is rendered."""

    name: str
    engines: frozenset[str]
    summary: str
    render: Callable[[Endpoint, str, Sequence[tuple[str, str]]], Rendered]
    default_url_env: str = "DATABASE_URL"


# --- encoding ------------------------------------------------------------------------


def quote_component(value: str, safe: str = "") -> str:
    """Percent-encode every byte of ``value`` (UTF-8) outside ``A-Za-z0-9-._~`` (and
    ``safe``); never ``+`` for a space."""
    return quote(value, safe=safe)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_ip(host: str) -> bool:
    if ":" in host:
        return True
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def _url(
    scheme: str,
    endpoint: Endpoint,
    query: Query,
    *,
    dbname: str | None = None,
) -> str:
    user = quote_component(endpoint.user)
    password = quote_component(endpoint.password)
    path = quote_component(endpoint.dbname) if dbname is None else dbname
    url = f"{scheme}://{user}:{password}@{url_host(endpoint.host)}:{endpoint.port}/{path}"
    if query:
        url += "?" + "&".join(f"{quote_component(k)}={quote_component(v, '/')}" for k, v in query)
    return url


# Query keys that steer TLS in some dialect: libpq's, node-postgres's compatibility
# switch, Laravel's PDO attributes, and every ssl*/tls* key (PyMySQL, MySQLdb, mysql2,
# the mariadb connector, Ecto, MySQL's URI).
_TLS_KEYS = frozenset({"requiressl", "uselibpqcompat", "sslnegotiation"})
_TLS_PREFIXES = ("ssl", "tls", "options[")


def _steers_tls(key: str) -> bool:
    lowered = key.lower()
    return lowered in _TLS_KEYS or lowered.startswith(_TLS_PREFIXES)


def _merge(tls: Query, extra: Sequence[tuple[str, str]], dialect: str) -> Query:
    """``tls`` then the user's ``extra`` parameters. A TLS key of the user's is refused
    unless cloudboot sets the same key to the same value (then it is dropped): the
    sslmode alone decides what the client verifies."""
    ours = dict(tls)
    merged = list(tls)
    for key, value in extra:
        if key in ours and ours[key] == value:
            continue
        if key in ours or _steers_tls(key):
            raise UrlRefused(
                f"{dialect}: the query parameter {key!r} of DATABASE_URL would change the "
                "TLS that cloudboot renders for CLOUDBOOT_SSLMODE; remove it"
            )
        merged.append((key, value))
    return merged


def _refuse(dialect: str, what: str) -> UrlRefused:
    return UrlRefused(f"{dialect}: {what}")


def _only(url_env: str, url: str) -> Rendered:
    return Rendered({url_env: url}, frozenset({url_env}))


def _check_host(endpoint: Endpoint, dialect: str) -> None:
    if "%" in endpoint.host:
        raise _refuse(dialect, "an IPv6 zone (%) in the host cannot be written in a URL")


def _refuse_socket_localhost(endpoint: Endpoint, dialect: str) -> None:
    # libmariadb, the mysql2 gem and PHP's mysqlnd take "localhost" to mean the Unix
    # socket: no TLS, and perhaps another server.
    if endpoint.host.lower() == "localhost":
        raise _refuse(
            dialect, "the host localhost means the Unix socket to this client; use 127.0.0.1"
        )


LIBPQ_CARRIED = frozenset(
    {
        "application_name", "fallback_application_name", "connect_timeout",
        "client_encoding", "options", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout",
        "target_session_attrs", "load_balance_hosts", "channel_binding", "require_auth",
        "gssencmode", "krbsrvname", "gsslib", "replication",
    }
)  # fmt: skip
"""libpq connection keywords of an incoming URL that cloudboot carries over. The others
would contradict the target (``host``, ``dbname``, ``user``, ``password``, ``service``,
``passfile``), steer TLS (refused as such), or are unknown, which libpq refuses."""


def _check_libpq_keys(extra: Sequence[tuple[str, str]], dialect: str) -> None:
    for key, _value in extra:
        if key in LIBPQ_CARRIED or _steers_tls(key):
            continue
        raise _refuse(
            dialect,
            f"the query parameter {key!r} of DATABASE_URL is not a libpq connection option "
            "cloudboot can carry (libpq refuses unknown ones; host, user and the like are "
            "cloudboot's own): remove it",
        )


def _libpq_query(endpoint: Endpoint) -> Query:
    query = [("sslmode", endpoint.sslmode)]
    return query + ([("sslrootcert", endpoint.ca_file)] if endpoint.ca_file else [])


def _need_ca(endpoint: Endpoint, dialect: str) -> str:
    if endpoint.ca_file is None:
        raise _refuse(dialect, f"sslmode {endpoint.sslmode} needs a CA file")
    return endpoint.ca_file


# --- PostgreSQL ----------------------------------------------------------------------


def _libpq(scheme: str) -> Callable[[Endpoint, str, Sequence[tuple[str, str]]], Rendered]:
    """libpq's own URI (psql, psycopg, pgx, ActiveRecord's pg, SQLAlchemy's psycopg):
    every byte decoded, ``sslmode``/``sslrootcert`` with libpq's meaning."""

    def render(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
        _check_host(endpoint, scheme)
        _check_libpq_keys(extra, scheme)
        query = _merge(_libpq_query(endpoint), extra, scheme)
        return _only(url_env, _url(scheme, endpoint, query))

    return render


# pg-connection-string decodes the database with decodeURI, which leaves the escapes of
# ";/?:@&=+$,#" alone: write those that a URL path may hold raw, refuse the others.
_DECODE_URI_KEEPS_RAW = "$&+,:;=@"
_NODE_PG_CANNOT = "#?/"


def _node_pg_prepares(password: str) -> str:
    """What node-postgres hashes: non-ASCII spaces to a space, RFC 3454 B.1 dropped, NFKC
    (pg 8.23's partial SASLprep, without its prohibition checks)."""
    mapped = []
    for c in password:
        if stringprep.in_table_c12(c):
            mapped.append(" ")
        elif not stringprep.in_table_b1(c):
            mapped.append(c)
    return unicodedata.normalize("NFKC", "".join(mapped))


def _postgres_keeps_raw(prepared: str) -> bool:
    """Whether PostgreSQL's SASLprep rejects the prepared form (a prohibited, unassigned
    in Unicode 3.2, or bidi-violating character), so that the server hashes the raw
    password instead."""
    prohibited = (
        stringprep.in_table_a1,
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    if any(check(c) for c in prepared if c != " " for check in prohibited):
        return True
    if any(stringprep.in_table_d1(c) for c in prepared):
        rtl_ends = stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])
        return not rtl_ends or any(stringprep.in_table_d2(c) for c in prepared)
    return False


def node_pg_password_differs(password: str) -> bool:
    """Whether node-postgres would hash another password than the server: when the
    server keeps the raw password (SASLprep rejects it) but pg still normalizes it."""
    if password.isascii():
        return False
    prepared = _node_pg_prepares(password)
    return prepared != password and _postgres_keeps_raw(prepared)


def _node_postgres(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    dialect = "node-postgres"
    _check_host(endpoint, dialect)
    if node_pg_password_differs(endpoint.password):
        raise _refuse(
            dialect,
            "node-postgres normalizes (NFKC) a password that PostgreSQL's SASLprep keeps "
            "as it is (it holds a character SASLprep prohibits): it cannot log in",
        )
    if any(c in endpoint.dbname for c in _NODE_PG_CANNOT):
        raise _refuse(
            dialect, "node-postgres cannot read a database name holding # ? or / from a URL"
        )
    # uselibpqcompat=true gives sslmode libpq's meaning; without it node-postgres treats
    # verify-ca and require as verify-full.
    tls = [("uselibpqcompat", "true"), *_libpq_query(endpoint)]
    dbname = quote_component(endpoint.dbname, _DECODE_URI_KEEPS_RAW)
    return _only(url_env, _url("postgresql", endpoint, _merge(tls, extra, dialect), dbname=dbname))


def _django_postgres(environ_style: bool) -> Callable[..., Rendered]:
    dialect = "django-environ" if environ_style else "django"

    def render(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
        _check_host(endpoint, dialect)
        if environ_style and endpoint.dbname.startswith("/"):
            # django-environ takes a decoded path starting with "/" as a socket folder.
            raise _refuse(dialect, "django-environ cannot read a database name starting with /")
        _check_libpq_keys(extra, dialect)  # OPTIONS: the driver's connect() keywords
        query = _merge(_libpq_query(endpoint), extra, dialect)
        return _only(url_env, _url("postgresql", endpoint, query))

    return render


# --- MySQL family --------------------------------------------------------------------

_MYSQL_URI_MODES = {
    "verify-full": "VERIFY_IDENTITY",
    "verify-ca": "VERIFY_CA",
    "require": "REQUIRED",
    "disable": "DISABLED",
}


def _mysql_uri(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    """MySQL's URI spelling (MySQL Shell, Connector/J). None of the framework clients
    measured honours it: they have dialects of their own."""
    _check_host(endpoint, "mysql")
    tls = [("ssl-mode", _MYSQL_URI_MODES[endpoint.sslmode])]
    tls += [("ssl-ca", endpoint.ca_file)] if endpoint.ca_file else []
    return _only(url_env, _url("mysql", endpoint, _merge(tls, extra, "mysql")))


def _pymysql(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    """SQLAlchemy ``mysql+pymysql``: ``ssl_*`` keys become PyMySQL's ssl dict; a CA
    verifies chain and host name; any ssl key makes TLS mandatory."""
    dialect = "sqlalchemy"
    _check_host(endpoint, dialect)
    if not endpoint.password.isascii():
        raise _refuse(
            dialect,
            "PyMySQL sends a str password as Latin-1: a non-ASCII password cannot log in "
            "through a mysql+pymysql URL",
        )
    tls: Query
    if endpoint.sslmode == "disable":
        # Without any ssl key PyMySQL 1.2 tries TLS and falls back ("preferred").
        tls = [("ssl_disabled", "true")]
    elif endpoint.sslmode == "require":
        tls = [("ssl_check_hostname", "false")]
    else:
        tls = [("ssl_ca", _need_ca(endpoint, dialect))]
        tls += [("ssl_check_hostname", "false")] if endpoint.sslmode == "verify-ca" else []
    return _only(url_env, _url("mysql+pymysql", endpoint, _merge(tls, extra, dialect)))


def _mysqlclient_tls(endpoint: Endpoint, dialect: str, ca_key: str) -> Query:
    """MySQLdb (mysqlclient 2.3 on MariaDB Connector/C 3.3): only ``VERIFY_IDENTITY``
    enforces TLS; ``REQUIRED`` falls back to plaintext when the server has no TLS, and
    ``VERIFY_CA`` checks the host name too."""
    _refuse_socket_localhost(endpoint, dialect)
    if endpoint.sslmode == "disable":
        return [("ssl_mode", "DISABLED")]
    if endpoint.sslmode != "verify-full":
        raise _refuse(
            dialect,
            f"sslmode {endpoint.sslmode} cannot be given to MySQLdb on MariaDB Connector/C "
            "(REQUIRED falls back to plaintext, VERIFY_CA also checks the host name); "
            "use verify-full",
        )
    return [(ca_key, _need_ca(endpoint, dialect)), ("ssl_mode", "VERIFY_IDENTITY")]


def _sqlalchemy_mysqldb(
    endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]
) -> Rendered:
    dialect = "sqlalchemy-mysqldb"
    _check_host(endpoint, dialect)
    tls = _mysqlclient_tls(endpoint, dialect, "ssl_ca")
    return _only(url_env, _url("mysql+mysqldb", endpoint, _merge(tls, extra, dialect)))


def _django_mysql(environ_style: bool) -> Callable[..., Rendered]:
    dialect = "django-environ" if environ_style else "django"

    def render(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
        _check_host(endpoint, dialect)
        if environ_style and endpoint.sslmode != "disable":
            # django-environ passes each query key to MySQLdb as a keyword: a CA needs
            # the ssl dict, which only dj-database-url builds (from ssl-ca).
            raise _refuse(
                dialect,
                "django-environ cannot give MySQLdb a CA file, and without one MySQLdb "
                "does not require TLS; use the django dialect (dj-database-url)",
            )
        # dj-database-url turns ssl-ca into MySQLdb's ssl dict.
        tls = _mysqlclient_tls(endpoint, dialect, "ssl-ca")
        return _only(url_env, _url("mysql", endpoint, _merge(tls, extra, dialect)))

    return render


def _node_tls_variables(endpoint: Endpoint) -> dict[str, str]:
    # Node reads NODE_EXTRA_CA_CERTS once, at start, and adds it to its own store.
    return {"NODE_EXTRA_CA_CERTS": endpoint.ca_file} if endpoint.ca_file else {}


def _mysql2(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    """mysql2 (Node): query values are JSON-parsed, so ``ssl`` takes an object; the CA
    comes through Node's own ``NODE_EXTRA_CA_CERTS``."""
    dialect = "mysql2"
    _check_host(endpoint, dialect)
    if endpoint.sslmode == "verify-ca":
        raise _refuse(
            dialect,
            "mysql2 verifies a chain without the host name only against all of Node's CAs "
            "(public ones too); use verify-full",
        )
    if endpoint.sslmode == "verify-full" and _is_ip(endpoint.host):
        raise _refuse(dialect, "mysql2 does not check the certificate of an IP address host")
    options: dict[str, bool] | None = {
        "verify-full": {"rejectUnauthorized": True, "verifyIdentity": True},
        "require": {"rejectUnauthorized": False},
        "disable": None,
    }[endpoint.sslmode]
    tls = [("ssl", json.dumps(options, separators=(",", ":")))] if options else []
    url = _url("mysql", endpoint, _merge(tls, extra, dialect))
    return Rendered({url_env: url, **_node_tls_variables(endpoint)}, frozenset({url_env}))


def _prisma(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    """Prisma 7's driver adapters: ``@prisma/adapter-pg`` hands the URL to node-postgres;
    ``@prisma/adapter-mariadb`` to the mariadb connector, whose URL takes ``ssl`` as a
    boolean only (verified against Node's store and NODE_EXTRA_CA_CERTS)."""
    if endpoint.engine == "postgres":
        return _node_postgres(endpoint, url_env, extra)
    dialect = "prisma"
    _check_host(endpoint, dialect)
    if endpoint.sslmode in ("verify-ca", "require"):
        raise _refuse(
            dialect,
            f"the mariadb connector's URL has only ssl=true (verify-full); sslmode "
            f"{endpoint.sslmode} cannot be carried",
        )
    tls = [("ssl", "true")] if endpoint.sslmode == "verify-full" else []
    url = _url("mysql", endpoint, _merge(tls, extra, dialect))
    return Rendered({url_env: url, **_node_tls_variables(endpoint)}, frozenset({url_env}))


def _rails(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    """ActiveRecord: ``postgresql://`` goes to libpq; ``mysql2://`` to the mysql2 gem."""
    if endpoint.engine == "postgres":
        return _libpq("postgresql")(endpoint, url_env, extra)
    dialect = "rails"
    _check_host(endpoint, dialect)
    _refuse_socket_localhost(endpoint, dialect)
    if endpoint.sslmode != "disable":
        raise _refuse(
            dialect,
            "the mysql2 gem on MariaDB Connector/C ignores ssl_mode and sslverify and logs "
            "in without TLS when the server offers none: it cannot require TLS",
        )
    return _only(url_env, _url("mysql2", endpoint, _merge([], extra, dialect)))


# PHP's mysqlnd PDO attributes (PHP 8.x built with mysqlnd, as Debian and the official
# images are): Laravel's URL parser turns options[N]=V into the connection's options.
_PDO_MYSQL_ATTR_SSL_CA = "1009"
_PDO_MYSQL_ATTR_SSL_CIPHER = "1011"
_PDO_MYSQL_ATTR_SSL_VERIFY_SERVER_CERT = "1014"
# A value that PDO puts inside its DSN unquoted (or in libpq's conninfo quotes).
_DSN_UNSAFE = ";'\\"


_PHP_INT = re.compile(r"0|-?[1-9][0-9]{0,18}")


def _json_decodes(value: str) -> bool:
    """Whether PHP's json_decode turns ``value`` into something whose string is not
    ``value`` (Laravel decodes every URL part): only a plain integer survives. Python's
    json takes a little more (NaN), which is refused too."""
    try:
        json.loads(value)
    except ValueError:
        return False
    return not (_PHP_INT.fullmatch(value) and -(2**63) <= int(value) < 2**63)


def _laravel(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    """Laravel's ConfigurationUrlParser: each part is rawurldecoded, then json_decoded;
    query keys go into the connection config (``options[N]`` into PDO's attributes)."""
    dialect = "laravel"
    _check_host(endpoint, dialect)
    if ":" in endpoint.host:
        raise _refuse(dialect, "Laravel keeps the brackets of an IPv6 host, which PDO cannot read")
    for name, value in (("user", endpoint.user), ("password", endpoint.password)):
        if _json_decodes(value):
            raise _refuse(dialect, f"Laravel would JSON-decode the {name} (it reads as JSON)")
    if _json_decodes(endpoint.dbname) or any(c in endpoint.dbname for c in _DSN_UNSAFE):
        raise _refuse(dialect, "Laravel cannot carry this database name into PDO's DSN")
    if endpoint.engine == "postgres":
        if endpoint.ca_file and any(c in endpoint.ca_file for c in _DSN_UNSAFE + " "):
            raise _refuse(dialect, "the CA file path cannot be written into PDO's DSN")
        query = _merge(_libpq_query(endpoint), extra, dialect)
        return _only(url_env, _url("pgsql", endpoint, query))
    _refuse_socket_localhost(endpoint, dialect)
    tls: Query
    if endpoint.sslmode == "verify-ca":
        raise _refuse(
            dialect,
            "PHP's mysqlnd checks the host name whenever it verifies the chain; use verify-full",
        )
    if endpoint.sslmode == "verify-full":
        tls = [
            (f"options[{_PDO_MYSQL_ATTR_SSL_CA}]", _need_ca(endpoint, dialect)),
            (f"options[{_PDO_MYSQL_ATTR_SSL_VERIFY_SERVER_CERT}]", "true"),
        ]
    elif endpoint.sslmode == "require":
        # A cipher list turns TLS on (mysqlnd then refuses a server without it); the
        # verification is off, as require asks.
        tls = [
            (f"options[{_PDO_MYSQL_ATTR_SSL_CIPHER}]", "DEFAULT"),
            (f"options[{_PDO_MYSQL_ATTR_SSL_VERIFY_SERVER_CERT}]", "false"),
        ]
    else:
        tls = []
    return _only(url_env, _url("mysql", endpoint, _merge(tls, extra, dialect)))


def _ecto(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
    """Ecto decodes query values twice, so only plain words go in; the certificate
    options belong in the app's ``ssl_opts`` (README)."""
    _check_host(endpoint, "ecto")
    if any("%" in k or "%" in v for k, v in extra):
        raise _refuse("ecto", "Ecto decodes query values twice: a % in a parameter changes")
    tls = [] if endpoint.sslmode == "disable" else [("ssl", "true")]
    return _only(url_env, _url("ecto", endpoint, _merge(tls, extra, "ecto")))


def _by_engine(
    postgres: Callable[..., Rendered], mysql: Callable[..., Rendered]
) -> Callable[[Endpoint, str, Sequence[tuple[str, str]]], Rendered]:
    def render(endpoint: Endpoint, url_env: str, extra: Sequence[tuple[str, str]]) -> Rendered:
        chosen = postgres if endpoint.engine == "postgres" else mysql
        return chosen(endpoint, url_env, extra)

    return render


_PG = frozenset({"postgres"})
_MY = frozenset({"mysql"})
_BOTH = frozenset({"postgres", "mysql"})

_DIALECTS = (
    Dialect("libpq", _PG, "postgresql:// for libpq: psql, psycopg, pgx", _libpq("postgresql")),
    Dialect("postgresql", _PG, "same as libpq (today's name)", _libpq("postgresql")),
    Dialect("postgres", _PG, "libpq's URI with the postgres:// scheme", _libpq("postgres")),
    Dialect("node-postgres", _PG, "pg (Node): uselibpqcompat=true", _node_postgres),
    Dialect("prisma", _BOTH, "Prisma 7 adapter-pg / adapter-mariadb", _prisma),
    Dialect(
        "django",
        _BOTH,
        "dj-database-url (Django): postgresql:// / mysql:// with ssl-ca",
        _by_engine(_django_postgres(False), _django_mysql(False)),
    ),
    Dialect(
        "django-environ",
        _BOTH,
        "django-environ (Django)",
        _by_engine(_django_postgres(True), _django_mysql(True)),
    ),
    Dialect(
        "sqlalchemy",
        _BOTH,
        "SQLAlchemy: postgresql+psycopg:// / mysql+pymysql://",
        _by_engine(_libpq("postgresql+psycopg"), _pymysql),
    ),
    Dialect("mysql+pymysql", _MY, "same as sqlalchemy (today's name)", _pymysql),
    Dialect("sqlalchemy-mysqldb", _MY, "SQLAlchemy mysql+mysqldb://", _sqlalchemy_mysqldb),
    Dialect("rails", _BOTH, "ActiveRecord: postgresql:// / mysql2://", _rails),
    Dialect("laravel", _BOTH, "Laravel's DB_URL: pgsql:// / mysql://", _laravel, "DB_URL"),
    Dialect("ecto", _BOTH, "Ecto (Phoenix): ecto:// with ssl=true", _ecto),
    Dialect("mysql2", _MY, "mysql2 (Node): ssl as JSON, NODE_EXTRA_CA_CERTS", _mysql2),
    Dialect("mysql", _MY, "MySQL URI spelling: ssl-mode, ssl-ca", _mysql_uri),
)
DIALECTS: Mapping[str, Dialect] = {d.name: d for d in _DIALECTS}
"""Every accepted dialect name, with the engines it serves."""

_DEFAULTS = {"postgres": "libpq", "mysql": "mysql"}


def default_dialect(engine: str) -> str:
    """The dialect used when none is set: today's default URLs (``postgresql://`` and
    the MySQL URI spelling)."""
    return _DEFAULTS[engine]


def render_variables(
    dialect: str,
    endpoint: Endpoint,
    *,
    url_env: str,
    extra_query: Sequence[tuple[str, str]] = (),
) -> Rendered:
    """Every variable to give the app (name → value) for ``dialect``, and which hold
    the password; :class:`UrlRefused` for a combination the consumer cannot carry."""
    chosen = DIALECTS.get(dialect)
    if chosen is None:
        raise UrlRefused(f"unknown URL dialect; known: {', '.join(DIALECTS)}")
    if endpoint.engine not in chosen.engines:
        raise _refuse(dialect, f"this dialect does not serve the {endpoint.engine} engine")
    if endpoint.sslmode in VERIFYING and endpoint.ca_file is None:
        raise _refuse(dialect, f"sslmode {endpoint.sslmode} needs a CA file")
    return chosen.render(endpoint, url_env, extra_query)


def libpq_variables(endpoint: Endpoint, passfile: str | None) -> dict[str, str]:
    """libpq's own variables for apps and tools that read them instead of a URL; the
    password only through ``PGPASSFILE``. None of them is secret."""
    if endpoint.engine != "postgres":
        raise UrlRefused("libpq variables: only for the postgres engine")
    variables = {
        "PGHOST": endpoint.host,
        "PGPORT": str(endpoint.port),
        "PGDATABASE": endpoint.dbname,
        "PGUSER": endpoint.user,
        "PGSSLMODE": endpoint.sslmode,
    }
    if endpoint.ca_file:
        variables["PGSSLROOTCERT"] = endpoint.ca_file
    if passfile:
        variables["PGPASSFILE"] = passfile
    return variables
