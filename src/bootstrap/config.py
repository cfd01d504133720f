"""Load: judge every input once, at the start, into one :class:`Config`.

Settings and credentials are read from the mapping passed in and checked together:
every problem in either is reported in one :class:`~bootstrap.errors.ConfigError`
(exit 78) that names the variable and the field, never the value. Whatever a later
stage would refuse is refused here instead, so that ``render --dry-run`` and
``cloudboot check`` see exactly what a boot would. Nothing after this looks at the
environment again, except to hand it on to the server and the hooks.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .engines import Engine, all_engines, engine_for
from .errors import ConfigError
from .settings import Hook, Settings, load_settings
from .sources import Credentials, find_credentials
from .target import EngineName, Source, SslMode, Target
from .tls import resolve_ca_file
from .urls import DIALECTS, default_dialect

# The file artifacts, each with the setting that places it.
ARTIFACT_SETTINGS: dict[str, str] = {
    "pgpass": "pgpass",
    "pg_service": "pg_service_file",
    "profile": "profile",
    "my_cnf": "my_cnf",
    "wp_config": "wp_config",
}


@dataclass(frozen=True)
class Config:
    """Everything the later stages work from, judged.

    ``url_dialect`` names the consumer family the URL is written for
    (:mod:`bootstrap.urls`), ``url_env`` the variable it goes in, ``url_query`` the
    query parameters of the user's own ``DATABASE_URL`` that it carries over;
    ``files`` maps each file artifact to write (``pgpass``, ``pg_service``,
    ``profile``, ``my_cnf``, ``wp_config``) to its path; ``owner`` is the ``(uid,
    gid)`` for files cloudboot creates, ``None`` to keep the running user's; ``hooks``
    are the TOML hooks then ``CLOUDBOOT_MIGRATE_COMMAND``; ``environ`` is the
    environment cloudboot was given, for the server and the hooks.
    """

    settings: Settings
    target: Target
    source: Source
    url_dialect: str
    url_env: str
    url_query: tuple[tuple[str, str], ...]
    files: Mapping[str, Path]
    wp_config_sample: Path | None
    owner: tuple[int, int] | None
    hooks: tuple[Hook, ...]
    environ: Mapping[str, str]

    @property
    def engine(self) -> Engine:
        return engine_for(self.target.engine)


def load(environ: Mapping[str, str]) -> Config:
    """The :class:`Config` of ``environ``, or one :class:`ConfigError` with every
    problem in the settings and the credentials."""
    settings, problems = load_settings(environ)
    # Credentials are looked for even when the settings are bad, so that one run
    # reports everything; the setting they depend on is taken when valid.
    secret_env = settings.secret_env if settings else environ.get("CLOUDBOOT_SECRET_ENV") or None
    credentials, found_problems, names = find_credentials(environ, secret_env)
    problems += found_problems
    if settings is None or credentials is None:
        raise ConfigError(problems)
    engine = _engine(settings, credentials, problems)
    if engine is None:
        raise ConfigError(problems)
    config = _resolve(settings, credentials, engine, names, environ, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _engine(settings: Settings, credentials: Credentials, problems: list[str]) -> Engine | None:
    name: EngineName | None = settings.engine or credentials.engine
    if name is None and credentials.port is not None:
        name = next((e.name for e in all_engines() if credentials.port in e.detection_ports), None)
    if name is None:
        problems.append(
            f"cannot tell the engine of {credentials.source.label}: set CLOUDBOOT_ENGINE "
            "to postgres or mysql"
        )
        return None
    return engine_for(name)


def _resolve(  # noqa: PLR0917 - one call site, every argument a different stage's value
    settings: Settings,
    credentials: Credentials,
    engine: Engine,
    names: Mapping[str, str],
    environ: Mapping[str, str],
    problems: list[str],
) -> Config:
    problem = engine.dbname_problem(credentials.dbname)
    if problem:
        problems.append(f"{names['dbname']} {problem}")
    hooks = settings.all_hooks()
    limit = engine.max_key_length
    if settings.release is not None and len(settings.release) > limit:
        problems.append(f"CLOUDBOOT_RELEASE is longer than {limit} characters ({engine.title})")
    problems += [
        f"the name of hook number {number} is longer than {limit} characters ({engine.title})"
        for number, hook in enumerate(hooks, 1)
        if hook.lock and len(hook.name) > limit
    ]
    dialect = DIALECTS[settings.url_scheme or default_dialect(engine.name)]
    if engine.name not in dialect.engines:
        problems.append(
            f"CLOUDBOOT_URL_SCHEME {dialect.name} is not a URL dialect for {engine.title} "
            f"(the database in {credentials.source.label})"
        )
    if settings.libpq_env and "pgpass" not in engine.artifacts:
        problems.append(f"CLOUDBOOT_LIBPQ_ENV is for PostgreSQL; the database is {engine.title}")
    sslmode, ca_setting, query = _tls_choice(settings, credentials, environ, problems)
    ca_file = resolve_ca_file(sslmode, ca_setting, environ)
    if ca_file is not None:
        problems += _ca_file_problems(ca_file, system=ca_setting == "system")
    target = Target(
        engine=engine.name,
        host=credentials.host,
        port=credentials.port or engine.default_port,
        dbname=credentials.dbname,
        user=credentials.user,
        password=credentials.password,
        sslmode=sslmode,
        ca_file=ca_file,
        connect_timeout=settings.connect_timeout,
        wait_timeout=settings.wait_timeout,
    )
    files = _files(settings, engine, credentials.source, environ, problems)
    sample = _path(settings.wp_config_sample, environ)
    if sample is None and "wp_config" in files:
        sample = files["wp_config"].parent / "wp-config-sample.php"
    return Config(
        settings=settings,
        target=target,
        source=credentials.source,
        url_dialect=dialect.name,
        url_env=settings.url_env or dialect.default_url_env,
        url_query=query,
        files=files,
        wp_config_sample=sample,
        owner=_owner(settings.owner, problems),
        hooks=hooks,
        environ=environ,
    )


# The user's own TLS choices cloudboot honours: libpq's variables, and the TLS keys of
# an incoming URL (libpq's and MySQL's spellings), by what each value means.
_TLS_MODES = {
    "verify-full": "verify-full", "verify_identity": "verify-full",
    "verify-ca": "verify-ca", "verify_ca": "verify-ca",
    "require": "require", "required": "require",
    "disable": "disable", "disabled": "disable",
}  # fmt: skip
_OPPORTUNISTIC = frozenset({"allow", "prefer", "preferred"})
_MODE_KEYS = frozenset({"sslmode", "ssl-mode", "ssl_mode"})
_CA_KEYS = frozenset({"sslrootcert", "ssl-ca", "ssl_ca"})


def _tls_choice(
    settings: Settings,
    credentials: Credentials,
    environ: Mapping[str, str],
    problems: list[str],
) -> tuple[SslMode, str, tuple[tuple[str, str], ...]]:
    """The sslmode and CA file to use, and the incoming URL's query without the TLS keys
    honoured here. ``PGSSLMODE``/``PGSSLROOTCERT`` and the URL's own TLS keys are the
    user's choice: honoured when the ``CLOUDBOOT_*`` setting is not given, refused when
    it is and says otherwise; TLS off only ever by ``CLOUDBOOT_SSLMODE=disable``, and
    opportunistic TLS (``prefer``) never."""
    label = credentials.source.label
    modes = [("PGSSLMODE", environ["PGSSLMODE"])] if environ.get("PGSSLMODE") else []
    cas = [("PGSSLROOTCERT", environ["PGSSLROOTCERT"])] if environ.get("PGSSLROOTCERT") else []
    query = []
    for key, value in credentials.query:
        if key.lower() in _MODE_KEYS:
            modes.append((f"{label} ({key})", value))
        elif key.lower() in _CA_KEYS:
            cas.append((f"{label} ({key})", value))
        else:
            query.append((key, value))
    chosen = {_mode(origin, value, settings, problems) for origin, value in modes} - {None}
    if len(chosen) > 1:
        problems.append("the TLS choices of the environment disagree: set CLOUDBOOT_SSLMODE")
    sslmode: SslMode = chosen.pop() if len(chosen) == 1 else settings.sslmode  # type: ignore[assignment]
    ca_setting = settings.ca_file
    for origin, value in cas:
        if "ca_file" not in settings.model_fields_set:
            ca_setting = value
        elif value != settings.ca_file:
            problems.append(
                f"{origin} names another CA file than CLOUDBOOT_CA_FILE: they must agree "
                "(or remove one)"
            )
    return sslmode, ca_setting, tuple(query)


def _mode(origin: str, value: str, settings: Settings, problems: list[str]) -> str | None:
    """The sslmode a user's TLS choice stands for, when it is to be honoured."""
    mode = _TLS_MODES.get(value.lower())
    explicit = "sslmode" in settings.model_fields_set
    if mode is None:
        why = "opportunistic TLS, which cloudboot does not do"
        why = why if value.lower() in _OPPORTUNISTIC else "something that is not an sslmode"
        problems.append(f"{origin} asks for {why}: set CLOUDBOOT_SSLMODE, or remove it")
    elif explicit and mode != settings.sslmode:
        problems.append(
            f"{origin} asks for sslmode {mode}, CLOUDBOOT_SSLMODE for {settings.sslmode}: "
            "they must agree (or remove one)"
        )
    elif mode == "disable" and not explicit:
        problems.append(f"{origin} turns TLS off: only CLOUDBOOT_SSLMODE=disable may")
    elif not explicit:
        return mode
    return None


def _ca_file_problems(path: str, *, system: bool) -> list[str]:
    where = "the system CA bundle" if system else "CLOUDBOOT_CA_FILE"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        hint = " (install ca-certificates, or set CLOUDBOOT_CA_FILE)" if system else ""
        return [f"{where} {path} does not exist{hint}"]
    except OSError as exc:
        return [f"{where} {path} cannot be read ({exc.strerror})"]
    if not stat.S_ISREG(info.st_mode):
        return [f"{where} {path} is not a regular file"]
    if not os.access(path, os.R_OK):
        return [f"{where} {path} cannot be read (permission denied)"]
    return []


def home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or os.path.expanduser("~"))


def _path(value: str | None, environ: Mapping[str, str]) -> Path | None:
    """A configured path (``~`` is the HOME of ``environ``), or ``None`` for none."""
    if not value:
        return None
    if value == "~" or value.startswith("~/"):
        return home(environ) / value[2:]
    return Path(value)


def _files(
    settings: Settings,
    engine: Engine,
    source: Source,
    environ: Mapping[str, str],
    problems: list[str],
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for kind, key in ARTIFACT_SETTINGS.items():
        value: str | None = getattr(settings, key)
        if value is None:
            value = engine.default_artifacts.get(kind)
        elif value and kind not in engine.artifacts:
            problems.append(
                f"CLOUDBOOT_{key.upper()} is a file for another engine's tools; the "
                f"database in {source.label} is {engine.title}: unset it"
            )
            continue
        path = _path(value, environ)
        if path is not None:
            files[kind] = path
    seen: dict[str, str] = {}
    for kind, path in files.items():
        where = os.path.normpath(os.path.abspath(path))
        if where in seen:
            problems.append(
                f"CLOUDBOOT_{ARTIFACT_SETTINGS[kind].upper()} and "
                f"CLOUDBOOT_{ARTIFACT_SETTINGS[seen[where]].upper()} name the same file"
            )
        seen.setdefault(where, kind)
    return files


def _owner(owner: str | None, problems: list[str]) -> tuple[int, int] | None:
    """``user[:group]`` (names or numbers) as ``(uid, gid)``; ``None`` keeps ours."""
    if not owner:
        return None
    user, _, group = owner.partition(":")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        else:
            gid = pwd.getpwuid(uid).pw_gid if not user.isdigit() else os.getgid()
    except (KeyError, ValueError):
        problems.append("CLOUDBOOT_OWNER names a user or group that does not exist")
        return None
    return uid, gid
