"""Debian's ``elixir`` decodes the ``ecto://`` URL cloudboot renders the way Ecto's
``parse_url`` does (``URI.parse``, userinfo split at the first ``:``, ``URI.decode`` of
each part, the query decoded twice, ``ssl=true`` a boolean) and gets back exactly the
parts; older Ecto, which cuts the userinfo at every ``:``, gets the same, because ``:``
is always encoded. Every URL goes through ONE ``elixir`` run: it takes a second to start.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from factories import url_of
from readers import EctoURL, elixir_parse_ecto_urls
from servers import NASTY_PASSWORDS

AWKWARD = "\\'\"`$:@/?#%+ =;&*![]{}()<>|~^\t\u00a0aZ0é漢🔑"


def ecto_url(
    home: Path, *, user: str, password: str, dbname: str, host: str, port: int, sslmode: str
) -> str:
    secret = {
        "host": host,
        "port": port,
        "dbname": dbname,
        "username": user,
        "password": password,
        "engine": "postgres",
    }
    environ = {
        "HOME": str(home),
        "DB_SECRET": json.dumps(secret),
        "CLOUDBOOT_URL_SCHEME": "ecto",
        "CLOUDBOOT_SSLMODE": sslmode,
        "CLOUDBOOT_CA_FILE": "/etc/ssl/certs/ca-certificates.crt",
        # Only the URL: the service file cannot hold a name with surrounding white space.
        "CLOUDBOOT_PGPASS": "",
        "CLOUDBOOT_PG_SERVICE_FILE": "",
    }
    url = url_of(environ)
    assert url.startswith("ecto://")
    return url


def test_elixir_decodes_the_ecto_url_like_ecto(home: Path) -> None:
    rng = random.Random(20241122)  # fixed: the same awkward values on every run
    cases: list[dict[str, str | int]] = []
    for password in NASTY_PASSWORDS:
        cases.append(
            {
                "user": "app:user@x",
                "password": password,
                "dbname": "my/db:é %",
                "host": "db.internal",
                "port": 5432,
            }
        )
    for _ in range(120):
        cases.append(
            {
                "user": "u" + "".join(rng.choice(AWKWARD) for _ in range(rng.randint(0, 20))),
                "password": "§pw§"
                + "".join(rng.choice(AWKWARD) for _ in range(rng.randint(1, 60))),
                "dbname": "d" + "".join(rng.choice(AWKWARD) for _ in range(rng.randint(0, 20))),
                "host": rng.choice(["db.internal", "10.1.2.3", "::1", "fd00::5"]),
                "port": rng.randint(1, 65535),
            }
        )
    sslmodes = ["verify-full", "require", "disable"]
    urls = [
        ecto_url(
            home,
            user=str(c["user"]),
            password=str(c["password"]),
            dbname=str(c["dbname"]),
            host=str(c["host"]),
            port=int(c["port"]),
            sslmode=sslmodes[i % 3],
        )
        for i, c in enumerate(cases)
    ]
    parsed = elixir_parse_ecto_urls(urls, home=home)
    for i, (case, ecto) in enumerate(zip(cases, parsed, strict=True)):
        expected_query = () if sslmodes[i % 3] == "disable" else (("ssl", "boolean:true"),)
        assert ecto == EctoURL(
            scheme="ecto",
            valid=True,
            username=str(case["user"]),
            password=str(case["password"]),
            host=str(case["host"]),
            port=int(case["port"]),
            database=str(case["dbname"]),
            old_ecto_username=str(case["user"]),
            old_ecto_password=str(case["password"]),
            query=expected_query,
        ), f"case {i}"
