"""``bootstrap.urls`` on its own: names, exact spellings, the user's extra query
parameters, refusals that name no value, and today's URLs kept byte for byte.

The clients' side of every rule is in ``test_framework_urls.py``.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.urls import (
    DIALECTS,
    Endpoint,
    UrlRefused,
    default_dialect,
    libpq_variables,
    render_variables,
)

PG = Endpoint(
    engine="postgres",
    host="db.internal",
    port=5432,
    dbname="app db/é",
    user="app:user",
    password="p@ss:w/rd?#%41 +",
    sslmode="verify-full",
    ca_file="/etc/ssl/rds ca.pem",
)
MY = replace(PG, engine="mysql", port=3306)
LEGACY = ("postgresql", "postgres", "ecto", "mysql", "mysql+pymysql")


def url(dialect: str, endpoint: Endpoint, **kwargs: object) -> str:
    return render_variables(dialect, endpoint, url_env="DATABASE_URL", **kwargs).variables[  # type: ignore[arg-type]
        "DATABASE_URL"
    ]


def test_libpq_url_is_exact() -> None:
    assert url("libpq", replace(PG, host="fd00::5")) == (
        "postgresql://app%3Auser:p%40ss%3Aw%2Frd%3F%23%2541%20%2B@[fd00::5]:5432/"
        "app%20db%2F%C3%A9?sslmode=verify-full&sslrootcert=/etc/ssl/rds%20ca.pem"
    )


def test_every_dialect_names_its_engines_and_refuses_the_others() -> None:
    for name, dialect in DIALECTS.items():
        assert dialect.name == name
        assert dialect.engines <= {"postgres", "mysql"}
        for endpoint in (PG, MY):
            if endpoint.engine in dialect.engines:
                continue
            with pytest.raises(UrlRefused, match="does not serve"):
                url(name, endpoint)
    assert default_dialect("postgres") == "libpq"
    assert default_dialect("mysql") == "mysql"
    assert DIALECTS["laravel"].default_url_env == "DB_URL"
    with pytest.raises(UrlRefused, match="unknown URL dialect"):
        url("jdbc", PG)


def test_only_the_url_is_secret_and_node_gets_its_ca_variable() -> None:
    rendered = render_variables("mysql2", replace(MY, host="db.internal"), url_env="X_URL")
    assert rendered.variables["NODE_EXTRA_CA_CERTS"] == MY.ca_file
    assert rendered.secret == {"X_URL"}
    assert set(rendered.variables) == {"X_URL", "NODE_EXTRA_CA_CERTS"}


def test_extra_query_is_appended_a_conflict_refused_an_agreement_dropped() -> None:
    extra = (("application_name", "web 1"), ("sslmode", "verify-full"))
    query = parse_qsl(urlsplit(url("libpq", PG, extra_query=extra)).query)
    assert query == [
        ("sslmode", "verify-full"),
        ("sslrootcert", "/etc/ssl/rds ca.pem"),
        ("application_name", "web 1"),
    ]
    for key, value in (("sslmode", "require"), ("sslcrl", "/x"), ("uselibpqcompat", "false")):
        with pytest.raises(UrlRefused, match=f"'{key}' of DATABASE_URL would change the TLS"):
            url("libpq", PG, extra_query=((key, value),))
    # Under require cloudboot sets no CA: one of the user's would make libpq verify.
    require = replace(PG, sslmode="require", ca_file=None)
    with pytest.raises(UrlRefused, match="sslrootcert"):
        url("libpq", require, extra_query=(("sslrootcert", "/ca.pem"),))
    with pytest.raises(UrlRefused, match=r"options\[1014\]"):
        url("laravel", replace(MY, host="10.0.0.5"), extra_query=(("options[1014]", "false"),))
    assert url("mysql2", replace(MY, sslmode="disable", ca_file=None)).endswith(
        "/app%20db%2F%C3%A9"
    )


def test_a_verifying_mode_without_a_ca_is_refused() -> None:
    for name, dialect in DIALECTS.items():
        endpoint = PG if "postgres" in dialect.engines else MY
        with pytest.raises(UrlRefused, match="needs a CA file"):
            url(name, replace(endpoint, ca_file=None))


def test_libpq_variables_hold_no_password() -> None:
    assert libpq_variables(PG, "/home/app/.pgpass") == {
        "PGHOST": "db.internal",
        "PGPORT": "5432",
        "PGDATABASE": "app db/é",
        "PGUSER": "app:user",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/ssl/rds ca.pem",
        "PGPASSFILE": "/home/app/.pgpass",
    }
    assert "PGSSLROOTCERT" not in libpq_variables(
        replace(PG, sslmode="require", ca_file=None), None
    )
    with pytest.raises(UrlRefused):
        libpq_variables(MY, None)


def test_an_ipv6_zone_is_refused() -> None:
    with pytest.raises(UrlRefused, match="zone"):
        url("libpq", replace(PG, host="fe80::1%eth0"))


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\0"),
    min_size=4,
    max_size=30,
)
MODES = st.sampled_from(["verify-full", "verify-ca", "require", "disable"])


# "§" stands in no message and no log line: a value cannot match their words by chance
# (Hypothesis draws the project's own string constants, such as event names, and the
# leak guard then guards every password a Secret has held in this process).
MARKED = TEXT.map(lambda value: f"§{value}")


@settings(max_examples=300, deadline=None)
@given(
    dialect=st.sampled_from(sorted(DIALECTS)),
    user=MARKED,
    password=MARKED,
    dbname=MARKED,
    sslmode=MODES,
    host=st.sampled_from(["db.internal", "localhost", "10.0.0.5", "::1"]),
)
def test_a_refusal_names_no_value(  # noqa: PLR0917 - hypothesis passes them by name
    dialect: str, user: str, password: str, dbname: str, sslmode: str, host: str
) -> None:
    engine = "postgres" if "postgres" in DIALECTS[dialect].engines else "mysql"
    ca = "/ca.pem" if sslmode in ("verify-full", "verify-ca") else None
    endpoint = Endpoint(engine, host, 5432, dbname, user, password, sslmode, ca)  # type: ignore[arg-type]
    try:
        rendered = render_variables(dialect, endpoint, url_env="DATABASE_URL")
    except UrlRefused as refusal:
        message = str(refusal)
    else:
        message = ""
        assert rendered.secret <= set(rendered.variables)
    for value in (user, password, dbname):
        assert value not in message
    assert "password=" not in repr(endpoint)
