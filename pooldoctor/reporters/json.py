"""The JSON report: stable and versioned, for CI pipelines and for re-rendering later.

Every command's report is its model, converted by :func:`pooldoctor.core.serde.to_dict`, under
three keys that say what it is: ``schema``, ``command`` and the ``pooldoctor`` version that wrote
it. Keys are sorted and the layout is fixed, so identical input gives byte-identical output and a
diff between two runs shows only what changed; the only fields that vary between otherwise
identical runs are timings (``seconds``, ``held_seconds``). Bump ``SCHEMA`` when a key changes
meaning or disappears; adding keys does not need a bump. :mod:`pooldoctor.commands.report` loads
any of them back with :func:`pooldoctor.core.serde.from_dict`.
"""

from __future__ import annotations

import json
from typing import Any

from pooldoctor import __version__
from pooldoctor.core.model import InspectReport, Outcome, Report, SimulateReport, to_dict

SCHEMA = 1
COMMANDS: dict[type, str] = {Report: "check", SimulateReport: "simulate", InspectReport: "inspect"}
"""The command that writes each report (``"command"`` in the JSON)."""


def render(report: Outcome) -> str:
    """The report as indented JSON with sorted keys and a trailing newline."""
    return json.dumps(as_dict(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def as_dict(report: Outcome) -> dict[str, Any]:
    """The JSON document as plain Python values (what :func:`render` serialises)."""
    data: dict[str, Any] = to_dict(report)
    data["environment"] = {str(k): str(v) for k, v in report.environment.items()}
    return {"schema": SCHEMA, "command": COMMANDS[type(report)], "pooldoctor": __version__, **data}
