"""No secret in any log line, whatever the level and format: the redaction cloudboot's
structlog set-up applies to event fields, nested values and formatted tracebacks.

``test_cli_render`` runs the real command at debug level; these pin the mechanism with
values a driver might put in an exception message.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import structlog

from bootstrap.logs import configure, get_logger
from bootstrap.secret import Secret, register_secret_form
from leakguard import assert_no_secret, find_secrets
from servers import NASTY_PASSWORDS


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _fail_like_a_driver(password: str) -> None:
    raise RuntimeError(f'FATAL: password authentication failed for "{password}"')


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize("index", range(len(NASTY_PASSWORDS)), ids=lambda i: f"password{i}")
def test_no_secret_in_fields_nested_values_or_tracebacks(log_format: str, index: int) -> None:
    password = NASTY_PASSWORDS[index]
    Secret(password)
    register_secret_form(quote(password, safe=""))
    stream = io.StringIO()
    configure(log_format, "debug", stream=stream)
    log = get_logger()
    log.debug("cloudboot.test.field", detail=f"connecting with {password}")
    log.info(
        "cloudboot.test.nested", items=[{"dsn": f"u:{quote(password, safe='')}@h"}], t=(password,)
    )
    try:
        _fail_like_a_driver(password)
    except RuntimeError:
        log.error("cloudboot.test.exception", exc_info=True)
    output = stream.getvalue()
    assert output.count("cloudboot.test.") == 3
    assert "<SECRET>" in output
    assert find_secrets(output) == [], "a secret shows in the log"
    assert_no_secret(output)


def test_levels_filter() -> None:
    stream = io.StringIO()
    configure("json", "warning", stream=stream)
    get_logger().info("cloudboot.test.hidden")
    get_logger().warning("cloudboot.test.shown")
    assert "cloudboot.test.hidden" not in stream.getvalue()
    assert "cloudboot.test.shown" in stream.getvalue()
