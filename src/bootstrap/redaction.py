"""Blanking secrets out of what cloudboot shows, honestly.

No secret may ever show, and no output may become unreadable because of one: keys,
event names and the fields that are facts about the connection (host, engine,
database, ...) are never rewritten, and a short or common password is masked where it
stands as a value or a whole token, not as every substring (the password ``o`` must not
turn ``connection refused`` into nonsense, nor ``postgres`` the engine's name).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .secret import known_secrets

REDACTED = "<SECRET>"

STRONG_LENGTH = 8
"""A secret at least this long, and not a plain word or a number (an address, a version),
is masked wherever it appears, inside other text too; a weaker one only as a whole
value or token."""

_COMMON = re.compile(r"[^\W\d_]+|[\d.:\-]+")

PUBLIC_FIELDS = frozenset(
    {
        "event", "level", "timestamp", "logger",
        "source", "variables", "engine", "host", "port", "dbname", "database", "name",
        "user", "sslmode", "timeout_s", "attempt", "attempts", "elapsed_s", "retry_in_s",
        "error_class", "reason", "database_exists", "kind", "path", "mode", "action",
        "hook", "program", "pid", "client", "command", "exit_code", "why", "exists",
        "create_database", "config_file", "ca_file", "addresses", "address",
        "connect_ms", "protocol", "cipher", "host_name_matches", "trusted", "skipped",
        "session_tls", "logged_in_to", "version", "encoding", "lc_collate", "lc_ctype",
        "server_charset", "server_collation", "database_charset", "database_collation",
        "not_before", "not_after", "days_left", "ok", "elapsed_ms", "steps",
    }
)  # fmt: skip
"""Fields whose values are facts cloudboot itself produced, never a secret's place."""


def _strong(secret: str) -> bool:
    return len(secret) >= STRONG_LENGTH and not _COMMON.fullmatch(secret)


def _forms(secret: str) -> set[str]:
    # As JSON writes it too: a rendered line escapes quotes, backslashes, non-ASCII.
    return {secret, json.dumps(secret)[1:-1]}


def redact_text(text: str) -> str:
    """``text`` with every known secret masked: a strong one everywhere, a weak one
    where it is the whole text or a whole token (not inside a word or a number)."""
    if not text:
        return text
    secrets = sorted(known_secrets(), key=len, reverse=True)
    for secret in secrets:
        if text == secret:
            return REDACTED
    for secret in secrets:
        if _strong(secret):
            for form in _forms(secret):
                text = text.replace(form, REDACTED)
        elif secret in text:
            token = rf"(?<![\w.\-]){re.escape(secret)}(?![\w.\-])"
            text = re.sub(token, REDACTED, text)
    return text


def redact(value: Any, field: str | None = None) -> Any:
    """``value`` with known secrets masked, recursively through containers; the values
    of :data:`PUBLIC_FIELDS` and every key are left as they are."""
    if field in PUBLIC_FIELDS and not isinstance(value, dict | list | tuple):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(item, field) for item in value)
    return value


def redact_rendered(line: str) -> str:
    """A last pass over a rendered log line: strong secrets only (a weak one could be a
    key or an event name there)."""
    for secret in sorted(known_secrets(), key=len, reverse=True):
        if _strong(secret):
            for form in _forms(secret):
                line = line.replace(form, REDACTED)
    return line
