"""The resolved connection target: everything a stage needs to reach the database.

:func:`bootstrap.load` builds it once from the settings and the credentials; the wait,
the database stage, the hook locks, ``cloudboot check`` and the SQL clients all take it
as it is, and none of them looks at the environment again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from .secret import Secret

EngineName = Literal["postgres", "mysql"]
SslMode = Literal["verify-full", "verify-ca", "require", "disable"]

ENGINE_NAMES: tuple[EngineName, ...] = ("postgres", "mysql")
SSL_MODES: tuple[SslMode, ...] = ("verify-full", "verify-ca", "require", "disable")


@dataclass(frozen=True)
class Source:
    """Where the credentials came from: the source's label (``DB_SECRET``, ``DB_*``, ...)
    and the variables read, names only, for logs and ``cloudboot check``."""

    label: str
    variables: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """One database to log in to, fully resolved.

    ``ca_file`` is the real path of the CA bundle that verifies the server (the system
    bundle's path when the setting says ``system``), or ``None`` when nothing is
    verified (``require``, ``disable``). ``connect_timeout`` bounds one connection
    attempt, ``wait_timeout`` a whole stage of attempts.
    """

    engine: EngineName
    host: str
    port: int
    dbname: str
    user: str
    password: Secret
    sslmode: SslMode
    ca_file: str | None
    connect_timeout: float
    wait_timeout: float

    @property
    def address(self) -> str:
        """``host:port``, an IPv6 host in brackets: for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def on_database(self, dbname: str) -> Target:
        """The same login, to another database of the same server."""
        return dataclasses.replace(self, dbname=dbname)
