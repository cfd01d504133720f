"""cloudboot: turn injected database credentials into what an application reads, prove
the database is reachable over verified TLS, prepare it, and exec the server.

The library face: :func:`load` judges the settings and credentials of an environment
into one :class:`Config`; :func:`render` turns it into the artifacts; the later stages
(:func:`wait_only`, :func:`migrate`, :func:`boot`) run the boot. The CLI
(``cloudboot``) is built on exactly these. Names are imported on first use, so
``import bootstrap`` costs almost nothing and loads no driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "CloudbootError": "errors",
    "ConfigError": "errors",
    "HookError": "errors",
    "Interrupted": "errors",
    "LockLostError": "errors",
    "LockTimeoutError": "errors",
    "ProgramError": "errors",
    "RefusedError": "errors",
    "UnavailableError": "errors",
    "UsageError": "errors",
    "WriteError": "errors",
    "Secret": "secret",
    "Source": "target",
    "Target": "target",
    "Config": "config",
    "load": "config",
    "Hook": "settings",
    "Settings": "settings",
    "FileArtifact": "rendering",
    "Rendering": "rendering",
    "render": "rendering",
    "Planned": "writing",
    "plan": "writing",
    "write": "writing",
    "Prepared": "lifecycle",
    "boot": "lifecycle",
    "migrate": "lifecycle",
    "prepare": "lifecycle",
    "wait_only": "lifecycle",
    "write_artifacts": "lifecycle",
    "configure_logging": "logs",
}

_RENAMED = {"configure_logging": "configure"}

__all__ = [
    "CloudbootError",
    "Config",
    "ConfigError",
    "FileArtifact",
    "Hook",
    "HookError",
    "Interrupted",
    "LockLostError",
    "LockTimeoutError",
    "Planned",
    "Prepared",
    "ProgramError",
    "RefusedError",
    "Rendering",
    "Secret",
    "Settings",
    "Source",
    "Target",
    "UnavailableError",
    "UsageError",
    "WriteError",
    "__version__",
    "boot",
    "configure_logging",
    "load",
    "migrate",
    "plan",
    "prepare",
    "render",
    "wait_only",
    "write",
    "write_artifacts",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bootstrap' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), _RENAMED.get(name, name))
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .config import Config, load
    from .errors import (
        CloudbootError,
        ConfigError,
        HookError,
        Interrupted,
        LockLostError,
        LockTimeoutError,
        ProgramError,
        RefusedError,
        UnavailableError,
        UsageError,
        WriteError,
    )
    from .lifecycle import Prepared, boot, migrate, prepare, wait_only, write_artifacts
    from .logs import configure as configure_logging
    from .rendering import FileArtifact, Rendering, render
    from .secret import Secret
    from .settings import Hook, Settings
    from .target import Source, Target
    from .writing import Planned, plan, write
