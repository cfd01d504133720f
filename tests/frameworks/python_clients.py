"""One long-lived process per Python consumer, run as ``python python_clients.py NAME``.

Reads cases as JSON lines on stdin and logs in the way an app does with the variables
cloudboot rendered; answers one JSON line each (see ``tests/frameworkrun.py``).
Consumers: ``psycopg`` (the URL), ``libpq-env`` (psycopg reading libpq's ``PG*``
variables), ``sqlalchemy`` (``create_engine(URL)``), ``django`` (dj-database-url) and
``django-environ`` (a real Django connection, ``ensure_connection()`` and a query).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

PG_PROOF = (
    "select ssl, version, current_user, current_database() "
    "from pg_stat_ssl where pid = pg_backend_pid()"
)
MY_STATUS = "SHOW SESSION STATUS LIKE 'Ssl_version'"
MY_WHO = "SELECT CURRENT_USER(), DATABASE()"

Answer = dict[str, Any]


def proof(engine: str, execute: Callable[[str], list[Any]]) -> Answer:
    """What the server says about this session: user, database, TLS version."""
    if engine == "postgres":
        ssl, version, user, database = execute(PG_PROOF)[0]
        return {"ok": True, "user": user, "database": database, "ssl": version if ssl else None}
    status = execute(MY_STATUS)[0][1]
    user, database = execute(MY_WHO)[0]
    return {"ok": True, "user": user.rsplit("@", 1)[0], "database": database, "ssl": status or None}


def psycopg_url(engine: str, url: str | None) -> Answer:
    import psycopg  # noqa: PLC0415 - each consumer imports only its own client

    with psycopg.connect(url or "", connect_timeout=5) as conn:
        return proof(engine, lambda sql: list(conn.execute(sql).fetchall()))


def sqlalchemy_url(engine: str, url: str | None) -> Answer:
    import sqlalchemy  # noqa: PLC0415

    assert url is not None
    sa_engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with sa_engine.connect() as conn:
            return proof(engine, lambda sql: list(conn.exec_driver_sql(sql).fetchall()))
    finally:
        sa_engine.dispose()


def _django(parse: Callable[[str], dict[str, Any]]) -> Callable[[str, str | None], Answer]:
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415

    settings.configure(DATABASES={}, USE_TZ=True)
    django.setup()
    from django.db.utils import ConnectionHandler  # noqa: PLC0415

    def connect(engine: str, url: str | None) -> Answer:
        assert url is not None
        handler = ConnectionHandler({"default": parse(url)})
        connection = handler["default"]
        try:
            connection.ensure_connection()

            def execute(sql: str) -> list[Any]:
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    return list(cursor.fetchall())

            return proof(engine, execute)
        finally:
            connection.close()

    return connect


def django_dj() -> Callable[[str, str | None], Answer]:
    import dj_database_url  # noqa: PLC0415

    return _django(lambda url: dict(dj_database_url.parse(url)))


def django_environ() -> Callable[[str, str | None], Answer]:
    import environ  # noqa: PLC0415

    return _django(lambda url: dict(environ.Env.db_url_config(url)))


CONSUMERS: dict[str, Callable[[], Callable[[str, str | None], Answer]]] = {
    "psycopg": lambda: psycopg_url,
    "libpq-env": lambda: psycopg_url,
    "sqlalchemy": lambda: sqlalchemy_url,
    "django": django_dj,
    "django-environ": django_environ,
}


def main() -> None:
    connect = CONSUMERS[sys.argv[1]]()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        saved = {name: os.environ.get(name) for name in request["env"]}
        os.environ.update(request["env"])
        url_env = request.get("url_env")
        try:
            answer = connect(request["engine"], request["env"][url_env] if url_env else None)
        except Exception as error:  # noqa: BLE001 - every failure is an answer
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        print(json.dumps({"id": request["id"], **answer}), flush=True)


if __name__ == "__main__":
    main()
