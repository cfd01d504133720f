"""Property tests for every escaping function of ``bootstrap.render``.

Each value is escaped by cloudboot and read back by the reader's own rules: small
reimplementations of libpq's ``.pgpass`` and service-file parsers, of mysys's option-file
value parsing and of PHP's single-quoted strings (written from FORMATS.md and the
readers' sources), and the real ``shlex``, ``urllib``, python-dotenv, ``/bin/sh`` and
``php`` where they can run quickly. The real database clients read the same files in
``test_readers_*``.

Passwords given to cloudboot's ``Secret`` carry a marker prefix: every secret cloudboot
sees is also watched by the leak guard for the rest of the run, and a short generated
value such as ``00000000`` would otherwise match harmless output of later tests.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import dotenv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap import Secret, Target, load
from bootstrap.rendering import (
    escape_pgpass,
    quote_dotenv,
    quote_option_file,
    quote_shell,
    render_my_cnf,
    render_pg_service,
    render_pgpass,
    render_profile,
)
from bootstrap.urls import UrlRefused, quote_component
from bootstrap.wpconfig import escape_php
from factories import unit_target, url_for
from readers import clean_env, parse_sqlalchemy_url, reader

MARKER = "\u00a7pw\u00a7"

# Any text (no lone surrogates: they have no UTF-8 form), half of it drawn from the
# characters some reader treats specially, so that escapes and their neighbours meet
# often; and text a line-based reader can hold (cloudboot refuses CR, LF and NUL first).
SPECIAL = "\\'\"`$:@/?#%+ =;&*![]{}()<>|~^\t\v\f\r\n\0"


SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
ORDINARY = "aZ0é漢🔑\x7f\u00a0"


def _text(exclude: str = "", max_size: int = 80) -> st.SearchStrategy[str]:
    awkward = st.sampled_from([c for c in SPECIAL + ORDINARY if c not in exclude])
    anything = st.characters(exclude_categories=SURROGATES, exclude_characters=exclude)
    return st.one_of(st.text(awkward, max_size=max_size), st.text(anything, max_size=max_size))


any_text = _text()
line_text = _text(exclude="\r\n\0")
shell_text = _text(exclude="\0")
# For the slower real programs: batches in which awkward characters are most of the text.
sh_batches = st.lists(
    st.text(st.sampled_from((SPECIAL + ORDINARY).replace("\0", ""))), min_size=1, max_size=25
)
php_batches = st.lists(
    st.text(
        st.sampled_from((SPECIAL + ORDINARY).replace("\0", "").replace("\r", "").replace("\n", ""))
    ),
    min_size=1,
    max_size=40,
)
nonempty_line_text = line_text.filter(bool)
# Names both engines can hold: at most 63 bytes (PostgreSQL), no trailing space (MySQL).
dbnames = nonempty_line_text.filter(lambda s: len(s.encode()) <= 63 and not s.endswith(" "))
passwords = line_text.map(lambda s: MARKER + s)
hostnames = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True
)
hosts = st.one_of(hostnames, st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
ports = st.integers(min_value=1, max_value=65535)

PURE = settings(max_examples=300, deadline=None)
SUBPROCESS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def make_target(
    host: str,
    port: int,
    dbname: str,
    username: str,
    password: str,
    *,
    engine: str = "postgres",
    ca_file: str = "/ca dir/ca.pem",
) -> Target:
    return unit_target(
        engine=engine,
        host=host,
        port=port,
        dbname=dbname,
        user=username,
        password=Secret(password),
        ca_file=ca_file,
    )


# --- URL components -------------------------------------------------------------------

UNRESERVED_OR_ESCAPE = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})*")


@PURE
@given(any_text)
def test_quote_component_round_trips_and_uses_only_unreserved(value: str) -> None:
    quoted = quote_component(value)
    assert unquote(quoted, errors="strict") == value
    assert UNRESERVED_OR_ESCAPE.fullmatch(quoted)
    assert "+" not in quoted


@pytest.fixture(scope="module")
def spaced_ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA file that exists (load checks it), in a folder whose name needs escaping in
    a URL's ``sslrootcert``."""
    folder = tmp_path_factory.mktemp("ca") / "ca dir"
    folder.mkdir()
    (folder / "ca.pem").write_text("not read: only its presence is checked at load\n")
    return str(folder / "ca.pem")


@PURE
@given(host=hosts, port=ports, dbname=dbnames, username=nonempty_line_text, password=passwords)
def test_every_url_scheme_reads_back_through_cloudboot_and_sqlalchemy(
    spaced_ca_file: str, *, host: str, port: int, dbname: str, username: str, password: str
) -> None:
    schemes: tuple[tuple[str, Literal["postgres", "mysql"]], ...] = (
        ("postgresql", "postgres"),
        ("postgres", "postgres"),
        ("ecto", "postgres"),
        ("mysql", "mysql"),
        ("mysql+pymysql", "mysql"),
    )
    for scheme, engine in schemes:
        if scheme == "mysql+pymysql":
            # PyMySQL sends a str password as Latin-1: cloudboot refuses a non-ASCII one
            # for this dialect, so this one takes the password's ASCII spelling.
            with pytest.raises(UrlRefused, match="Latin-1"):
                url_for(make_target(host, port, dbname, username, password, engine=engine), scheme)
            password = password.encode("ascii", "backslashreplace").decode()
        found = make_target(
            host, port, dbname, username, password, engine=engine, ca_file=spaced_ca_file
        )
        url = url_for(found, scheme)
        # cloudboot reads its own URL back as DATABASE_URL (a CA named in it included) ...
        back = load({"DATABASE_URL": url, "CLOUDBOOT_ENGINE": engine}).target
        assert (back.host, back.port, back.dbname, back.user) == (host, port, dbname, username)
        if "sslrootcert=" in url:
            assert back.ca_file == spaced_ca_file
        assert back.password.reveal() == password
        # ... urllib splits it where every reader does ...
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == (host.lower(), port)
        assert unquote(parts.path[1:]) == dbname
        # ... and SQLAlchemy's pattern gives the same parts.
        sqlalchemy = parse_sqlalchemy_url(url)
        assert (sqlalchemy.host, sqlalchemy.port, sqlalchemy.database) == (host, port, dbname)
        assert (sqlalchemy.username, sqlalchemy.password) == (username, password)


# --- libpq .pgpass ----------------------------------------------------------------------


def _pgpass_match_field(line: bytes, pos: int, token: bytes) -> int | None:
    """libpq's pwdfMatchesString: the position after the field at ``pos`` if it matches
    ``token`` (``*`` matches anything), else None."""
    if line[pos : pos + 2] == b"*:":
        return pos + 2
    t = 0
    escaped = False
    while pos < len(line):
        if line[pos] == ord("\\") and not escaped:
            pos += 1
            escaped = True
        c = line[pos] if pos < len(line) else 0
        if c == ord(":") and t == len(token) and not escaped:
            return pos + 1
        escaped = False
        if t == len(token):
            return None
        if c == token[t]:
            pos += 1
            t += 1
        else:
            return None
    return None


def libpq_password(pgpass: bytes, host: str, port: str, dbname: str, user: str) -> str | None:
    """The password libpq's passwordFromFile finds in ``pgpass`` for these four values."""
    for raw in pgpass.split(b"\n"):
        line = raw.rstrip(b"\r\n")
        if not line or line.startswith(b"#"):
            continue
        pos: int | None = 0
        for token in (host, port, dbname, user):
            assert pos is not None
            pos = _pgpass_match_field(line, pos, token.encode())
            if pos is None:
                break
        if pos is None:
            continue
        rest, out, i = line[pos:], bytearray(), 0
        while i < len(rest) and rest[i] != ord(":"):
            if rest[i] == ord("\\") and i + 1 < len(rest):
                i += 1
            out.append(rest[i])
            i += 1
        return out.decode()
    return None


@PURE
@given(hosts, ports, line_text, line_text, passwords)
def test_pgpass_line_reads_back_through_libpq_rules(
    host: str, port: int, dbname: str, username: str, password: str
) -> None:
    pgpass = render_pgpass(make_target(host, port, dbname, username, password)).encode()
    assert pgpass.count(b"\n") == 1
    assert libpq_password(pgpass, host, str(port), dbname, username) == password
    if username != "*":  # a lone '*' is libpq's wildcard
        assert libpq_password(pgpass, host, str(port), dbname, username + "x") is None


@PURE
@given(line_text)
def test_escape_pgpass_leaves_no_bare_separator(value: str) -> None:
    escaped = escape_pgpass(value)
    # Every ':' and '\' is preceded by an escaping backslash.
    assert re.fullmatch(r"(?:[^:\\]|\\[:\\])*", escaped)


# --- libpq service file -------------------------------------------------------------------

SERVICE_KEYWORDS = {"host", "port", "dbname", "user", "sslmode", "sslrootcert", "passfile"}


def libpq_service(text: bytes, name: str) -> dict[str, str]:
    """libpq's parseServiceFile for one section: lines under 1023 bytes, trimmed with C
    isspace, split at the first '=', no quoting, the first value of a key wins."""
    found, values = False, dict[str, str]()
    for raw in text.split(b"\n"):
        assert len(raw) + 1 < 1023, "line too long in service file"
        line = raw.strip(b" \t\n\v\f\r")
        if not line or line.startswith(b"#"):
            continue
        if line.startswith(b"["):
            if found:
                break
            found = line[1:].startswith(name.encode()) and line[1 + len(name) :][:1] == b"]"
            continue
        if found:
            key, sep, value = line.partition(b"=")
            assert sep, "syntax error in service file"
            assert key.decode() in SERVICE_KEYWORDS, "syntax error in service file"
            values.setdefault(key.decode(), value.decode())
    return values


@PURE
@given(hosts, ports, line_text, line_text)
def test_service_file_reads_back_or_is_refused(
    host: str, port: int, dbname: str, username: str
) -> None:
    found = make_target(host, port, dbname, username, MARKER, ca_file="/ca.pem")
    text, problems = render_pg_service(found, name="app", passfile="/h/.pgpass")
    if problems:
        return
    assert libpq_service(text.encode(), "app") == {
        "host": host,
        "port": str(port),
        "dbname": dbname,
        "user": username,
        "sslmode": "verify-full",
        "sslrootcert": "/ca.pem",
        "passfile": "/h/.pgpass",
    }


# --- shell ------------------------------------------------------------------------------


@PURE
@given(shell_text)
def test_quote_shell_round_trips_through_shlex(value: str) -> None:
    assert shlex.split(quote_shell(value)) == [value]
    assert shlex.split(f"export X={quote_shell(value)}") == ["export", f"X={value}"]


@SUBPROCESS
@given(sh_batches)
def test_profile_round_trips_through_a_real_sh(tmp_path: Path, values: list[str]) -> None:
    names = [f"V{i}" for i in range(len(values))]
    profile = tmp_path / "profile"
    profile.write_text(render_profile(dict(zip(names, values, strict=True))), encoding="utf-8")
    script = '. "$1"; printf "%s\\0" ' + " ".join(f'"${n}"' for n in names)
    result = subprocess.run(
        [reader("sh"), "-c", script, "sh", str(profile)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=clean_env(tmp_path),
        check=True,
        timeout=30,
    )
    assert result.stdout.split(b"\0")[:-1] == [v.encode() for v in values]


# --- dotenv -----------------------------------------------------------------------------


@PURE
@given(line_text)
def test_quote_dotenv_round_trips_through_python_dotenv(value: str) -> None:
    stream = io.StringIO(f"DATABASE_URL={quote_dotenv(value)}\nNEXT='x'\n")
    assert dotenv.dotenv_values(stream=stream, interpolate=False) == {
        "DATABASE_URL": value,
        "NEXT": "x",
    }


# --- MySQL option files -------------------------------------------------------------------

_MYSYS_SPACE = b" \t\n\v\f\r"
_MYSYS_ESCAPES = {
    ord("n"): b"\n",
    ord("t"): b"\t",
    ord("r"): b"\r",
    ord("b"): b"\b",
    ord("s"): b" ",
    ord('"'): b'"',
    ord("'"): b"'",
    ord("\\"): b"\\",
}


def _mysys_remove_end_comment(line: bytes) -> bytes:
    quote, escape = 0, False
    for i, c in enumerate(line):
        if c in b"'\"" and not escape:
            if not quote:
                quote = c
            elif quote == c:
                quote = 0
        if not quote and c == ord("#"):
            return line[:i]
        escape = bool(quote) and c == ord("\\") and not escape
    return line


def mysys_option(line: bytes) -> tuple[bytes, bytes | None] | None:
    """mysys's search_default_file_with_ext for one ``option=value`` line: None for a
    comment or empty line, else the option and its value after quote stripping and
    backslash escapes (unknown escapes keep the backslash)."""
    line = line.lstrip(_MYSYS_SPACE)
    if not line or line[:1] in (b"#", b";"):
        return None
    line = _mysys_remove_end_comment(line)
    option, sep, value = line.partition(b"=")
    option = option.rstrip(_MYSYS_SPACE)
    if not sep:
        return option, None
    value = value.strip(_MYSYS_SPACE)
    if len(value) > 1 and value[:1] in (b'"', b"'") and value[:1] == value[-1:]:
        value = value[1:-1]
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == ord("\\") and i != len(value) - 1:
            i += 1
            out += _MYSYS_ESCAPES.get(value[i], b"\\" + bytes([value[i]]))
        else:
            out.append(value[i])
        i += 1
    return option, bytes(out)


@PURE
@given(line_text)
def test_quote_option_file_round_trips_through_mysys_rules(value: str) -> None:
    line = f"password={quote_option_file(value)}\n".encode()
    assert len(line) < 4096  # mysys reads lines into a 4 KiB buffer
    assert mysys_option(line) == (b"password", value.encode())


@PURE
@given(hosts, ports, line_text, nonempty_line_text, passwords)
def test_my_cnf_reads_back_through_mysys_rules(
    host: str, port: int, dbname: str, username: str, password: str
) -> None:
    text = render_my_cnf(
        make_target(host, port, dbname, username, password, engine="mysql", ca_file="/c a")
    )
    options: dict[bytes, bytes | None] = {}
    for raw in text.encode().split(b"\n"):
        if raw.startswith(b"[") or mysys_option(raw) is None:
            continue
        parsed = mysys_option(raw)
        assert parsed is not None
        options.setdefault(parsed[0], parsed[1])
    assert options == {
        b"user": username.encode(),
        b"password": password.encode(),
        b"host": host.encode(),
        b"protocol": b"TCP",
        b"port": str(port).encode(),
        b"ssl-ca": b"/c a",
        b"ssl": None,
        b"ssl-verify-server-cert": None,
        b"database": dbname.encode(),
    }


# --- PHP single-quoted strings --------------------------------------------------------------


def php_single_quoted(source: str) -> tuple[str, str]:
    """The value of the PHP single-quoted literal that starts ``source``, and what follows
    it (php-src's scanner: only ``\\\\`` and ``\\'`` are escapes)."""
    assert source[0] == "'"
    out, i = [], 1
    while i < len(source):
        c = source[i]
        if c == "\\" and source[i + 1 : i + 2] in ("\\", "'"):
            out.append(source[i + 1])
            i += 2
        elif c == "'":
            return "".join(out), source[i + 1 :]
        else:
            out.append(c)
            i += 1
    raise AssertionError("unterminated PHP string")


@PURE
@given(any_text)
def test_escape_php_round_trips_through_php_single_quote_rules(value: str) -> None:
    assert php_single_quoted(f"'{escape_php(value)}' );") == (value, " );")


@SUBPROCESS
@given(php_batches)
def test_escape_php_round_trips_through_real_php(tmp_path: Path, values: list[str]) -> None:
    source = "<?php\nreturn [\n" + "".join(f"'{escape_php(v)}',\n" for v in values) + "];\n"
    included = tmp_path / "values.php"
    included.write_text(source, encoding="utf-8")
    result = subprocess.run(
        [reader("php"), "-n", "-r", "echo json_encode(include $argv[1]);", "--", str(included)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=clean_env(tmp_path),
        check=True,
        timeout=30,
    )
    assert json.loads(result.stdout) == values
