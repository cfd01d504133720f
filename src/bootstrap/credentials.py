"""The database credentials every later stage works from, and the secret type that holds
the password so that it cannot leak through a repr, a log line or an exception."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Engine = Literal["postgres", "mysql"]

DEFAULT_PORTS: dict[str, int] = {"postgres": 5432, "mysql": 3306}

# Every secret value cloudboot has seen in this process; the log processor redacts them
# from every event as a last line of defence.
_KNOWN_SECRETS: set[str] = set()


class Secret:
    """A string that shows as ``<SECRET>`` everywhere except through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _KNOWN_SECRETS.add(value)

    def reveal(self) -> str:
        """The real value, for the one place that must hand it to a reader."""
        return self._value

    def __repr__(self) -> str:
        return "<SECRET>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<SECRET>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def register_secret_form(value: str) -> None:
    """Also redact ``value``: a secret as some reader needs it (percent-encoded, ...)."""
    if value:
        _KNOWN_SECRETS.add(value)


def known_secrets() -> frozenset[str]:
    """Every secret value wrapped so far in this process."""
    return frozenset(_KNOWN_SECRETS)


@dataclass(frozen=True)
class DatabaseCredentials:
    """Where the database is and how to log in, as found in one source.

    ``source`` names where they came from (variable names only, never values), for
    logs and ``cloudboot check``.
    """

    engine: Engine
    host: str
    port: int
    dbname: str
    username: str
    password: Secret = field(repr=True)
    source: str = ""
    variables: tuple[str, ...] = ()
