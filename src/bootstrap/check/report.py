"""The result of ``cloudboot check``: the steps that ran, as JSON or as text.

Nothing here prints or returns a secret: every string passes through the same redaction
as the logs before it leaves :class:`Report`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..redaction import redact

STEP_NAMES = ("sources", "dns", "tcp", "tls", "auth", "database", "server")


@dataclass
class Step:
    """One step's outcome. ``exit_code`` is 0 when it passed; it is not in the JSON."""

    name: str
    ok: bool
    elapsed_ms: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "elapsed_ms": self.elapsed_ms,
            "detail": self.detail,
            "error": self.error,
            "hint": self.hint,
        }


@dataclass
class Report:
    """The steps that ran, in order; only the last one may have failed."""

    steps: list[Step]

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def exit_code(self) -> int:
        return next((step.exit_code for step in self.steps if not step.ok), 0)

    def as_dict(self) -> dict[str, Any]:
        # Last line of defence: the same redaction as the logs, over every string.
        result: dict[str, Any] = redact(
            {"ok": self.ok, "steps": [step.as_dict() for step in self.steps]}
        )
        return result

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False)

    def to_text(self) -> str:
        data = self.as_dict()
        lines: list[str] = []
        for step in data["steps"]:
            mark = "PASS" if step["ok"] else "FAIL"
            lines.append(f"[{mark}] {step['name']} ({step['elapsed_ms']:.1f} ms)")
            lines += [
                f"       {key}: {_text_value(value)}" for key, value in step["detail"].items()
            ]
            if step["error"]:
                lines.append(f"       error: {step['error']}")
            if step["hint"]:
                lines.append(f"       what to do: {step['hint']}")
        if self.ok:
            lines.append(f"all {len(self.steps)} steps passed")
        else:
            lines.append(f"check failed at step {self.steps[-1].name} (exit {self.exit_code})")
        return "\n".join(lines)


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_text_value(v) for v in value) or "-"
    return str(value)
