"""Fail any test whose output shows a secret.

A pytest plugin (``pytest_plugins = ["leakguard"]`` in ``conftest.py``, or ``-p leakguard``)
plus helpers for output the plugin cannot see.

What counts as a secret
    Every value passed to :func:`register_secret` (at least 4 characters), and every
    value of 8 or more characters, other than a plain lower-case word such as
    ``password``, that cloudboot's own ``Secret`` type has wrapped in this process
    (``bootstrap.secret.known_secrets()``, read only if that module has been
    imported: a fresh import would know no secrets).
    A secret is found in its raw form and in the forms a careless program would print
    it: Python ``repr`` of the ``str`` and of its UTF-8 ``bytes``, JSON,
    percent-encoding (``quote`` and ``quote_plus``), and the ``.pgpass`` and PHP
    single-quote escapes.

What the plugin checks
    For every setup, call and teardown report: the captured stdout, stderr and log
    sections and the failure text (assertion diffs, ``--showlocals``, Hypothesis
    examples). Wherever a secret shows, it is replaced by ``<SECRET>`` in the report, so
    the terminal and JUnit output do not print it either. A report that shows a secret
    becomes FAILED with a "leakguard: test output shows a secret" message; a test that
    failed anyway and whose traceback merely shows the value (pytest prints function
    arguments) keeps its failure, redacted, with a "leakguard: redacted" note.
    A test that must show a value on purpose lists it in
    ``@pytest.mark.leakguard_allow(value, ...)``.

What it cannot see
    Output written with capturing off (``-s``), warnings, and the output of
    subprocesses that the test does not print: check those with :func:`assert_no_secret`.

PYTEST_DONT_REWRITE: conftest imports this module before pytest loads it as a plugin,
and it holds no test assertions, so it is not assertion-rewritten.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Generator, Iterable
from urllib.parse import quote, quote_plus

import pytest

MIN_REGISTERED_LENGTH = 4
MIN_HARVESTED_LENGTH = 8
REDACTED = "<SECRET>"

_registered: set[str] = set()


def register_secret(value: str) -> str:
    """Add ``value`` to the secrets no test output may contain; return it unchanged."""
    if len(value) < MIN_REGISTERED_LENGTH:
        raise ValueError(
            f"a secret of {len(value)} characters would match harmless output; "
            f"use at least {MIN_REGISTERED_LENGTH}"
        )
    _registered.add(value)
    return value


def registered_secrets() -> frozenset[str]:
    """The registered values plus those cloudboot's ``Secret`` type has seen."""
    return frozenset(_registered | _cloudboot_secrets())


def _cloudboot_secrets() -> set[str]:
    # Secrets made in this process are in the module already imported; importing it
    # afresh would only give an empty set (and bootstrap may not exist yet).
    module = sys.modules.get("bootstrap.secret")
    known = getattr(module, "known_secrets", None)
    if known is None:
        return set()
    try:
        values = known()
    except Exception:  # noqa: BLE001 - the guard must never break a test run on its own
        return set()
    return {v for v in values if isinstance(v, str) and _worth_guarding(v)}


def _worth_guarding(value: str) -> bool:
    # Dummy words such as "password" or "postgres", and numbers such as an address, show
    # up in honest output (a host, an engine): cloudboot masks those as whole tokens
    # only (bootstrap.redaction), and tests assert their places themselves.
    is_common = re.fullmatch(r"[^\W\d_]+|[\d.:\-]+", value) is not None
    return len(value) >= MIN_HARVESTED_LENGTH and not is_common


def spellings(value: str) -> dict[str, str]:
    """The forms of ``value`` that count as showing it, by name."""
    forms = {
        "raw": value,
        "repr": repr(value)[1:-1],
        "bytes repr": repr(value.encode("utf-8"))[2:-1],
        "JSON": json.dumps(value)[1:-1],
        "percent-encoded": quote(value, safe=""),
        "form-encoded": quote_plus(value, safe=""),
        ".pgpass-escaped": value.replace("\\", "\\\\").replace(":", "\\:"),
        "PHP-escaped": value.replace("\\", "\\\\").replace("'", "\\'"),
    }
    unique: dict[str, str] = {}
    for name, form in forms.items():
        if form not in unique.values():
            unique[name] = form
    return unique


def _allowed_values(allow: Iterable[str]) -> set[str]:
    """The allowed values and every spelling of them: cloudboot registers a password's
    encoded forms as secrets of their own, and an allowed password may show encoded."""
    return {form for value in allow for form in spellings(value).values()}


def find_secrets(text: str, *, allow: Iterable[str] = ()) -> list[str]:
    """Descriptions (never the values) of every secret spelling in ``text``."""
    allowed = _allowed_values(allow)
    found = []
    for index, secret in enumerate(sorted(registered_secrets() - allowed)):
        for name, form in spellings(secret).items():
            if form in text:
                found.append(f"secret #{index} ({len(secret)} chars) {name}")
                break
    return found


def redact(text: str, *, allow: Iterable[str] = ()) -> str:
    """``text`` with every spelling of every secret replaced by ``<SECRET>``."""
    allowed = _allowed_values(allow)
    # Longest first, so a secret that contains another is replaced whole.
    forms = {
        form for secret in registered_secrets() - allowed for form in spellings(secret).values()
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def assert_no_secret(text: str | bytes, *, allow: Iterable[str] = ()) -> None:
    """Raise ``AssertionError`` if ``text`` (e.g. a subprocess's output) shows a secret.

    ``allow`` lists values that may appear (say, the one password a generated file must
    contain). The error message says which spelling was found and shows the text with the
    secrets redacted, never the secret itself.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    allow = tuple(allow)
    found = find_secrets(text, allow=allow)
    if found:
        raise AssertionError(f"output shows {', '.join(found)}:\n{redact(text, allow=allow)}")


# ---------------------------------------------------------------------------------------
# The pytest plugin


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leakguard_allow(*values): these secret values may appear in this test's output",
    )


def _allowed(item: pytest.Item) -> tuple[str, ...]:
    return tuple(value for mark in item.iter_markers("leakguard_allow") for value in mark.args)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    allow = _allowed(item)
    leaks: list[str] = []

    sections = []
    for title, content in report.sections:
        found = find_secrets(content, allow=allow)
        leaks += [f"{what} in {title!r}" for what in found]
        sections.append((title, redact(content, allow=allow) if found else content))
    report.sections = sections
    # Later phases copy the item's sections again: redact the source too.
    item_sections = getattr(item, "_report_sections", None)
    if leaks and isinstance(item_sections, list):
        item_sections[:] = [
            (when, key, redact(content, allow=allow)) for when, key, content in item_sections
        ]

    failure = report.longreprtext if report.longrepr is not None else ""
    in_failure = find_secrets(failure, allow=allow)
    if in_failure:
        failure = redact(failure, allow=allow)
        report.longrepr = failure

    if leaks or (in_failure and not report.failed):
        leaks += [f"{what} in the failure text" for what in in_failure]
        message = "leakguard: test output shows a secret: " + "; ".join(dict.fromkeys(leaks))
        report.longrepr = f"{failure}\n\n{message}" if report.failed else message
        report.outcome = "failed"
        if hasattr(report, "wasxfail"):
            del report.wasxfail
    elif in_failure:
        # The test failed anyway and pytest's traceback shows the value (say, as a function
        # argument): not cloudboot's leak, but keep it off the terminal.
        report.longrepr = f"{failure}\n\nleakguard: redacted {', '.join(in_failure)}"
    return report
