"""Shared factories for the tests: the secrets a platform injects, resolved targets for
unit tests, and the rendering of an environment. One place for each, so that a change of
layout or of the library's face is made once.
"""

from __future__ import annotations

import json
from typing import Any

from bootstrap import Config, Rendering, Secret, Target, load, render

RDS_SECRET_FIELDS: dict[str, Any] = {
    "dbClusterIdentifier": "sample-cluster",
    "password": "s3cret:pa@ss/w?rd#%+ 'q\"\\$`é",
    "dbname": "app",
    "engine": "postgres",
    "port": 5432,
    "host": "sample-cluster.cluster-abc.eu-west-1.rds.amazonaws.com",
    "username": "appuser",
}
"""An AWS Secrets Manager RDS secret as Copilot injects it."""


def rds_secret(**fields: Any) -> str:
    """:data:`RDS_SECRET_FIELDS` as JSON with ``fields`` changed (``None`` leaves one out)."""
    data = {**RDS_SECRET_FIELDS, **fields}
    return json.dumps({key: value for key, value in data.items() if value is not None})


def login_secret(login: Any, **fields: Any) -> str:
    """A secret that points at ``login`` (a ``bootproc.Target`` on a throwaway server),
    ``localhost`` by default, with ``fields`` changed."""
    data: dict[str, Any] = {
        "host": "localhost",
        "port": login.port,
        "username": login.user,
        "password": login.password,
        "dbname": login.dbname,
        "engine": login.engine,
        **fields,
    }
    return json.dumps({key: value for key, value in data.items() if value is not None})


def unit_target(**fields: Any) -> Target:
    """A resolved target for tests that do not connect (or connect to a closed port)."""
    values: dict[str, Any] = {
        "engine": "mysql",
        "host": "127.0.0.1",
        "port": 9,
        "dbname": "app",
        "user": "u",
        "password": Secret("unit-test-password"),
        "sslmode": "verify-full",
        "ca_file": "/etc/ssl/certs/ca-certificates.crt",
        "connect_timeout": 5.0,
        "wait_timeout": 300.0,
        **fields,
    }
    return Target(**values)


def url_for(target: Target, dialect: str) -> str:
    """The URL ``dialect`` renders for ``target`` (in ``DATABASE_URL``)."""
    from bootstrap.rendering import endpoint  # noqa: PLC0415
    from bootstrap.urls import render_variables  # noqa: PLC0415

    rendered = render_variables(dialect, endpoint(target), url_env="DATABASE_URL")
    return rendered.variables["DATABASE_URL"]


def rendered(environ: dict[str, str]) -> tuple[Config, Rendering]:
    """``environ`` loaded and rendered, as the boot would."""
    config = load(environ)
    return config, render(config)


def url_of(environ: dict[str, str]) -> str:
    """The URL variable cloudboot would give the server for ``environ``."""
    config, rendering = rendered(environ)
    return rendering.environment[config.url_env]
