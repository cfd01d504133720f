"""The boot, stage by stage: load → render → write, then (in later stages) wait →
ensure the database → hooks → exec. Each stage takes what the one before returned."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .credentials import DatabaseCredentials, register_secret_form
from .logs import get_logger
from .render import Rendering, quote_component, render
from .settings import Settings
from .sources import load
from .write import Planned, plan, write


@dataclass(frozen=True)
class Prepared:
    """Settings, credentials and the rendering, with the writes already planned."""

    settings: Settings
    credentials: DatabaseCredentials
    rendering: Rendering
    planned: tuple[Planned, ...]
    environ: Mapping[str, str]

    def server_environment(self) -> dict[str, str]:
        """The environment the server is exec'd with: ours plus the rendered variables."""
        return {**self.environ, **self.rendering.environment}


def prepare(environ: Mapping[str, str]) -> Prepared:
    """Load and render everything and plan the writes; writes nothing."""
    settings, credentials = load(environ)
    # The password as the URL carries it, so that the log redaction catches it too.
    register_secret_form(quote_component(credentials.password.reveal()))
    rendering = render(credentials, settings, environ)
    planned = tuple(plan(rendering.files))
    get_logger().info(
        "cloudboot.sources.found",
        source=credentials.source,
        variables=list(credentials.variables),
        engine=credentials.engine,
        host=credentials.host,
        port=credentials.port,
        dbname=credentials.dbname,
    )
    return Prepared(settings, credentials, rendering, planned, environ)


def write_artifacts(prepared: Prepared) -> None:
    """Write what :func:`prepare` planned, all or nothing, and log each artifact."""
    write(prepared.planned, prepared.settings.owner)
    log = get_logger()
    for item in prepared.planned:
        log.info(
            "cloudboot.render.file",
            kind=item.artifact.kind,
            path=str(item.artifact.path),
            mode=f"{item.mode:04o}",
            action=item.action,
        )
