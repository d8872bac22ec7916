"""Contract of the `health` blueprint (api/health.py): the probes."""

from __future__ import annotations

from marshmallow import Schema, fields


class HealthSchema(Schema):
    status = fields.String(
        metadata={"description": "Always ok: otherwise the answer is a problem."}
    )

    example = {"status": "ok"}
