"""Render every artifact in memory: the server's environment and the files its tools read.

Each ``escape_*``/``render_*`` function follows the rules of its reader (FORMATS.md);
:func:`render` gathers them into a :class:`Rendering` and checks every file before
anything is written, so that a bad value stops the boot with nothing half-written.
Everything comes from the :class:`~bootstrap.config.Config`; nothing here looks at the
environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from .errors import ConfigError, WriteError
from .safepath import UnsafePath, read_trusted, trust_for
from .secret import register_secret_form
from .target import Target
from .urls import Endpoint, Rendered, UrlRefused, libpq_variables, render_variables, url_host

if TYPE_CHECKING:
    from .config import Config

SECRET_MODE = 0o600
WP_CONFIG_MODE = 0o640
MAX_WP_CONFIG_BYTES = 1 << 20
MAX_SHARED_BYTES = 1 << 20


@dataclass(frozen=True)
class FileArtifact:
    """One file to write: its bytes, its mode, whether an existing file's own mode and
    owner win over ours (``wp-config.php``), and what writing it does to a file the user
    shares (``note``: "keeps 2 other lines", for ``render --dry-run``)."""

    kind: str
    path: Path
    content: bytes
    mode: int
    keep_existing_mode: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Rendering:
    """Everything cloudboot hands over: variables for the server and files to write.
    ``secret_variables`` names the variables whose value holds the password."""

    environment: dict[str, str]
    files: tuple[FileArtifact, ...]
    secret_variables: frozenset[str]


# --- the URL ---------------------------------------------------------------------------


def endpoint(target: Target) -> Endpoint:
    """What :mod:`bootstrap.urls` renders a URL from."""
    return Endpoint(
        engine=target.engine,
        host=target.host,
        port=target.port,
        dbname=target.dbname,
        user=target.user,
        password=target.password.reveal(),
        sslmode=target.sslmode,
        ca_file=target.ca_file,
    )


# --- libpq files ---------------------------------------------------------------------


def escape_pgpass(value: str) -> str:
    """A ``.pgpass`` field: backslash and colon are escaped with a backslash."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def render_pgpass(target: Target) -> str:
    fields = (
        target.host,
        str(target.port),
        target.dbname,
        target.user,
        target.password.reveal(),
    )
    return ":".join(escape_pgpass(f) for f in fields) + "\n"


_SERVICE_LINE_MAX = 1021


def render_pg_service(target: Target, *, name: str, passfile: str | None) -> tuple[str, list[str]]:
    """A service file with one section; no password (the file has no permission check).

    libpq takes each line verbatim after trimming, with no quoting: a value with
    surrounding white space or a line over 1021 bytes cannot be written, and is
    reported as a problem instead.
    """
    pairs = [
        ("host", target.host),
        ("port", str(target.port)),
        ("dbname", target.dbname),
        ("user", target.user),
        ("sslmode", target.sslmode),
    ]
    if target.ca_file:
        pairs.append(("sslrootcert", target.ca_file))
    if passfile is not None:
        pairs.append(("passfile", passfile))
    problems = []
    lines = [f"[{name}]"]
    for key, value in pairs:
        line = f"{key}={value}"
        if value != value.strip() or not value:
            problems.append(f"the {key} cannot be written to the service file (white space)")
        if len(line.encode()) > _SERVICE_LINE_MAX:
            problems.append(f"the {key} line is too long for the service file")
        lines.append(line)
    return "\n".join(lines) + "\n", problems


# --- shell, dotenv, MySQL option files -------------------------------------------------


def quote_shell(value: str) -> str:
    """Single-quote for a POSIX shell: ``'`` becomes ``'\\''``."""
    return "'" + value.replace("'", "'\\''") + "'"


def render_profile(environment: Mapping[str, str]) -> str:
    return "".join(f"export {k}={quote_shell(v)}\n" for k, v in environment.items())


def quote_dotenv(value: str) -> str:
    """Single-quoted the way python-dotenv and docker compose read it."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_option_file(value: str) -> str:
    """A value for a MySQL/MariaDB option file: double-quoted, ``\\`` and ``"`` escaped
    (mysys strips one pair of quotes and reads ``\\\\`` ``\\"`` escapes; an unquoted
    ``#`` would start a comment)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_my_cnf(target: Target) -> str:
    sslmode, ca = target.sslmode, target.ca_file
    client = [
        ("user", target.user),
        ("password", target.password.reveal()),
        ("host", target.host),
        ("port", str(target.port)),
        # Without it the clients take host "localhost" to mean the Unix socket: no TLS,
        # and perhaps another server.
        ("protocol", "TCP"),
    ]
    if ca:
        client.append(("ssl-ca", ca))
    lines = ["[client]", *(f"{k}={quote_option_file(v)}" for k, v in client)]
    # MariaDB-only options go where MySQL's clients do not look, so that a MySQL 8
    # client reading [client] does not stop at an unknown option.
    lines.append("")
    lines.append("[client-mariadb]")
    if sslmode == "disable":
        lines.append("skip-ssl")
    else:
        lines.append("ssl")
        if sslmode in ("verify-ca", "verify-full"):
            lines.append("ssl-verify-server-cert")
    lines += ["", "[mysql]", f"database={quote_option_file(target.dbname)}"]
    return "\n".join(lines) + "\n"


# --- wp-config.php ---------------------------------------------------------------------


_CLIENT_FLAGS = {
    "verify-full": "MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT",
    "verify-ca": "MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT",
    "require": "MYSQLI_CLIENT_SSL",
    "disable": "0",
}


def wp_db_host(target: Target) -> str:
    # mysqli takes "localhost" to mean the Unix socket; 127.0.0.1 forces TCP (and TLS).
    host = "127.0.0.1" if target.host == "localhost" else target.host
    return f"{url_host(host)}:{target.port}"


def render_wp_config(
    template: str, constants: Mapping[str, str], *, salt: Mapping[str, str] | None = None
) -> str:
    """``template`` with each of ``constants`` (name → PHP expression) defined once, in
    PHP code (see :mod:`bootstrap.wpconfig`); raises
    :class:`~bootstrap.wpconfig.WpConfigRefused`."""
    from .wpconfig import edit  # noqa: PLC0415 - loaded for WordPress only

    data = template.encode("utf-8", "surrogateescape")
    return edit(data, constants, salt=salt).decode("utf-8", "surrogateescape")


def wp_constants(target: Target, *, collate: str) -> dict[str, str]:
    from .wpconfig import escape_php  # noqa: PLC0415 - loaded for WordPress only

    def literal(value: str) -> str:
        return f"'{escape_php(value)}'"

    return {
        "DB_NAME": literal(target.dbname),
        "DB_USER": literal(target.user),
        "DB_PASSWORD": literal(target.password.reveal()),
        "DB_HOST": literal(wp_db_host(target)),
        "DB_CHARSET": literal("utf8mb4"),
        "DB_COLLATE": literal(collate),
        "MYSQL_CLIENT_FLAGS": _CLIENT_FLAGS[target.sslmode],
    }


# --- gathering -------------------------------------------------------------------------


def render_environment(config: Config) -> Rendered:
    """The variables added to the server's environment, and which of them hold the
    password; :class:`ConfigError` when the URL dialect cannot carry this target."""
    try:
        rendered = render_variables(
            config.url_dialect,
            endpoint(config.target),
            url_env=config.url_env,
            extra_query=config.url_query,
        )
    except UrlRefused as exc:
        raise ConfigError([f"CLOUDBOOT_URL_SCHEME {config.url_dialect}: {exc}"]) from None
    env = dict(rendered.variables)
    pgpass = config.files.get("pgpass")
    if pgpass is not None:
        env["PGPASSFILE"] = str(pgpass)
    if "pg_service" in config.files:
        env["PGSERVICEFILE"] = str(config.files["pg_service"])
    if config.settings.libpq_env:
        env.update(
            libpq_variables(endpoint(config.target), None if pgpass is None else str(pgpass))
        )
    return Rendered(env, rendered.secret)


def secret_forms(config: Config) -> frozenset[str]:
    """The password in every form an artifact carries it (raw, percent-encoded), each
    registered with the log redactor; for masking output too."""
    password = config.target.password.reveal()
    forms = frozenset(f for f in (password, quote(password, safe="")) if f)
    for form in forms:
        register_secret_form(form)
    return forms


def render(config: Config) -> Rendering:
    """Every artifact the configuration asks for, checked; raises :class:`ConfigError`
    (with every problem) before anything is written."""
    secret_forms(config)
    problems: list[str] = []
    target = config.target
    rendered = render_environment(config)
    environment = rendered.variables
    files: list[FileArtifact] = []
    for kind, path in config.files.items():
        if kind == "wp_config":
            artifact = _render_wp_artifact(path, config, problems)
            if artifact is not None:
                files.append(artifact)
            continue
        existing = _existing_text(path, config)
        note = None
        if kind == "pgpass":
            content, note = merge_pgpass(existing, render_pgpass(target))
        elif kind == "pg_service":
            pgpass = config.files.get("pgpass")
            section, service_problems = render_pg_service(
                target,
                name=config.settings.pg_service_name,
                passfile=None if pgpass is None else str(pgpass),
            )
            problems += [f"CLOUDBOOT_PG_SERVICE_FILE: {p}" for p in service_problems]
            content, note = merge_pg_service(existing, section, config.settings.pg_service_name)
        else:
            content = render_profile(environment) if kind == "profile" else render_my_cnf(target)
            if existing and existing != content:
                note = "replaces the whole file: cloudboot owns it"
        data = content.encode("utf-8", "surrogateescape")  # a shared file's own bytes kept
        files.append(FileArtifact(kind, path, data, SECRET_MODE, note=note))
    if problems:
        raise ConfigError(problems)
    return Rendering(environment, tuple(files), rendered.secret)


def _existing_text(path: Path, config: Config) -> str | None:
    """The file at ``path`` as text (bytes that are not UTF-8 kept), reached by the same
    rules as the write; ``None`` when there is none."""
    try:
        data = read_trusted(path, trust_for(config.owner), limit=MAX_SHARED_BYTES)
    except UnsafePath as exc:
        raise WriteError(f"{path}: {exc}") from None
    return None if data is None else data.decode("utf-8", "surrogateescape")


def _pgpass_fields(line: str) -> list[str]:
    """A ``.pgpass`` line's fields, unescaped (libpq: ``\\`` and ``\\:``)."""
    fields, current, escaped = [], "", False
    for char in line.rstrip("\r\n"):
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(current)
            current = ""
        else:
            current += char
    return [*fields, current]


def merge_pgpass(existing: str | None, ours: str) -> tuple[str, str | None]:
    """``ours`` (one line) first, where libpq looks first, then every line of the
    existing file that is not for the same host, port, database and user: other logins,
    comments and wildcards are the user's and stay."""
    if not existing:
        return ours, None
    key = _pgpass_fields(ours)[:4]
    lines = existing.splitlines(keepends=True)
    kept = [line for line in lines if line.startswith("#") or _pgpass_fields(line)[:4] != key]
    kept = [line if line.endswith("\n") else line + "\n" for line in kept]
    others = sum(1 for line in kept if line.strip() and not line.startswith("#"))
    note = f"keeps {others} other line{'s' * (others != 1)}" if others else None
    return ours + "".join(kept), note


def merge_pg_service(existing: str | None, section: str, name: str) -> tuple[str, str | None]:
    """The existing service file with the section ``name`` replaced by ``section`` (in
    place, or added at the end); every other section stays."""
    if not existing:
        return section, None
    blocks: list[list[str]] = [[]]
    for line in existing.splitlines(keepends=True):
        if line.strip().startswith("[") and blocks[-1]:
            blocks.append([])
        blocks[-1].append(line if line.endswith("\n") else line + "\n")
    header = f"[{name}]"
    out: list[str] = []
    placed = False
    others = 0
    for block in blocks:
        if block and block[0].strip() == header:
            if not placed:
                out.append(section)
                placed = True
            continue
        others += bool(block) and block[0].strip().startswith("[")
        out.append("".join(block))
    if not placed:
        out.append(section)
    note = f"keeps {others} other section{'s' * (others != 1)}" if others else None
    return "".join(out), note


def _read_template(path: Path, config: Config) -> bytes | None:
    # Bytes: every line that is not ours stays byte for byte (CRLF, bytes that are not
    # UTF-8 in a comment). Reached by the same rules as the write: no planted link.
    return read_trusted(path, trust_for(config.owner), limit=MAX_WP_CONFIG_BYTES)


def _render_wp_artifact(path: Path, config: Config, problems: list[str]) -> FileArtifact | None:
    constants = wp_constants(config.target, collate=config.settings.wp_collate)
    try:
        template = _read_template(path, config) or b""
    except UnsafePath as exc:
        raise WriteError(f"wp_config artifact {path}: {exc}") from None
    # An empty file is a missing one (what the official image's entrypoint checks too):
    # created from the sample, never constants without a <?php around them.
    keep = bool(template.strip())
    if not keep:
        sample = config.wp_config_sample or path.parent / "wp-config-sample.php"
        try:
            sample_text = _read_template(sample, config)
        except UnsafePath as exc:
            problems.append(f"CLOUDBOOT_WP_CONFIG: its sample cannot be used: {exc}")
            return None
        if sample_text is None:
            problems.append(
                f"CLOUDBOOT_WP_CONFIG: {path} does not exist and its sample {sample} "
                "does not exist either"
            )
            return None
        template = sample_text
        source = sample
    else:
        source = path
    from .wpconfig import WpConfigRefused, edit  # noqa: PLC0415 - loaded for WordPress only

    try:
        text = edit(template, constants)
    except WpConfigRefused as exc:
        problems += [f"CLOUDBOOT_WP_CONFIG: {source}: {problem}" for problem in exc.problems]
        return None
    return FileArtifact("wp_config", path, text, WP_CONFIG_MODE, keep_existing_mode=keep)
