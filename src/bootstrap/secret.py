"""The type that holds a password, so that it cannot leak through a repr, a log line or
an exception, and the register of every secret value the log redactor must blank."""

from __future__ import annotations

# Every secret value cloudboot has seen in this process, in every form a reader needs
# (raw, percent-encoded, ...): the log redactor blanks them as a last line of defence.
_KNOWN_SECRETS: set[str] = set()


class Secret:
    """A string that shows as ``<SECRET>`` everywhere except through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret_form(value)

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
    """Every secret value registered so far in this process."""
    return frozenset(_KNOWN_SECRETS)
