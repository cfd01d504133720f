"""No secret in any log line, whatever the level and format: the redaction cloudboot's
structlog set-up applies to event fields, nested values and formatted tracebacks.

``test_cli_render`` runs the real command at debug level; these pin the mechanism with
values a driver might put in an exception message.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from bootstrap.logs import configure, get_logger
from bootstrap.secret import Secret, register_secret_form
from leakguard import assert_no_secret, find_secrets
from servers import NASTY_PASSWORDS


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


def test_the_library_logs_to_stderr_at_info_redacted_and_never_to_stdout(tmp_path: Path) -> None:
    # A program that imports bootstrap and calls it, with logging left as it is.
    script = """
import bootstrap, bootstrap.logs, structlog
structlog.configure(processors=[structlog.processors.JSONRenderer()])  # the app's own
from bootstrap.logs import get_logger
bootstrap.Secret("library-secret-value-9x")
get_logger().debug("cloudboot.test.debug_hidden")
get_logger().info("cloudboot.test.shown", detail="said library-secret-value-9x")
structlog.get_logger().info("app.own_event")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "cloudboot." not in result.stdout  # cloudboot never writes to stdout
    assert "app.own_event" in result.stdout  # and leaves the app's own logging alone
    assert "cloudboot.test.shown" in result.stderr
    assert "debug_hidden" not in result.stderr
    assert "library-secret-value-9x" not in result.stderr
    assert "<SECRET>" in result.stderr


def test_configure_logging_is_the_documented_way() -> None:
    import bootstrap  # noqa: PLC0415

    stream = io.StringIO()
    bootstrap.configure_logging("json", "debug", stream=stream)
    get_logger().debug("cloudboot.test.visible")
    assert "cloudboot.test.visible" in stream.getvalue()
