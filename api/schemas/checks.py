"""Contracts of the `checks` blueprint (api/checks.py): native decisions, one
or a batch."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from authz.engine.policy import SPACE_ACTIONS
from models import ID_MAX

from . import fields as f

ACTIONS = ", ".join(SPACE_ACTIONS)
ID_SCHEMA = {"type": "integer", "format": "int32", "minimum": 1, "maximum": ID_MAX}
CODE_SCHEMA = {"type": "string", "minLength": 1, "maxLength": f.CODE_MAX}


class QuestionSchema(Schema):
    user_id = f.record_id(required=True, strict=True)
    structure_id = f.record_id(required=True, strict=True)
    service = f.code(
        allow_none=True,
        load_default=None,
        description="Service code; null or absent: the structure as a whole.",
    )
    space = f.code(
        allow_none=True,
        load_default=None,
        description="Space code; null or absent: `action` is a management action (roles.yaml).",
    )
    action = f.code(required=True, description=f"{ACTIONS} (on a space), or a management action.")

    example = {
        "user_id": 42,
        "structure_id": 12,
        "service": None,
        "space": "issued_invoices",
        "action": "consult",
    }


class CheckSchema(QuestionSchema):
    at_least_revision = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "Answer from this revision or a newer one, or 503."},
    )
    explain = fields.Boolean(load_default=False)


class QuestionItem(fields.Field):
    """One question of a batch, checked by hand with QuestionSchema's rules.

    A batch carries up to a thousand questions, and marshmallow's nested load
    cost more than the decisions themselves (docs/performance.md): this field
    applies the same rules in plain Python. tests/test_checks_batch.py checks
    that both accept and refuse the same items.
    """

    STRINGS = {"action": True, "space": False, "service": False}  # name -> required
    INTS = ("user_id", "structure_id")

    def _deserialize(self, value, attr, data, **kwargs):  # noqa: ARG002 - marshmallow's signature
        if not isinstance(value, dict):
            raise ValidationError("Must be an object.")
        errors: dict[str, list[str]] = {
            name: ["Unknown field."] for name in value.keys() - self.STRINGS.keys() - set(self.INTS)
        }
        for name in self.INTS:
            number = value.get(name)
            if number is None:
                errors[name] = ["Missing data for required field."]
            elif type(number) is not int or number < 1:
                errors[name] = ["Must be an integer of at least 1."]
            elif number > ID_MAX:
                errors[name] = [f"Must be at most {ID_MAX}."]
        for name, required in self.STRINGS.items():
            text = value.get(name)
            if text is None:
                if required:
                    errors[name] = ["Missing data for required field."]
            elif not isinstance(text, str) or not 1 <= len(text) <= f.CODE_MAX:
                errors[name] = [f"Must be a string of 1 to {f.CODE_MAX} characters."]
            elif (why := f.unsafe_text(text)) is not None:
                errors[name] = [why]
        if errors:
            raise ValidationError(errors)
        return {
            "user_id": value["user_id"],
            "structure_id": value["structure_id"],
            "space": value.get("space"),
            "action": value["action"],
            "service": value.get("service"),
        }


class BatchSchema(Schema):
    checks = fields.List(
        QuestionItem(
            metadata={
                "type": "object",
                "required": ["user_id", "structure_id", "action"],
                "properties": {
                    "user_id": ID_SCHEMA,
                    "structure_id": ID_SCHEMA,
                    "service": {**CODE_SCHEMA, "type": ["string", "null"]},
                    "space": {**CODE_SCHEMA, "type": ["string", "null"]},
                    "action": CODE_SCHEMA,
                },
            }
        ),
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "At most AUTHZ_BATCH_MAX (1000) questions, each as in "
            "POST /v1/checks (without at_least_revision / explain)."
        },
    )
    at_least_revision = fields.Integer(validate=validate.Range(min=0))
    explain = fields.Boolean(load_default=False)

    example = {
        "checks": [
            QuestionSchema.example,
            {"user_id": 42, "structure_id": 12, "space": None, "action": "users.manage"},
        ]
    }


class DecisionSchema(Schema):
    allowed = fields.Boolean(required=True)
    revision = fields.Integer(required=True)
    policy_version = fields.Integer(
        allow_none=True,
        metadata={
            "description": "The stored policy version it was taken with (`authz policy "
            "history`); null while the database stores none."
        },
    )
    rule = fields.String(metadata={"description": "What allowed it (when allowed)."})
    reason = fields.String(metadata={"description": "Why it was denied (when denied)."})
    explanation = fields.Dict()

    example = {
        "allowed": True,
        "revision": 4471,
        "policy_version": 3,
        "rule": "role-default:principal modify issued_invoices (spaces.yaml)",
    }


class BatchDecisionSchema(Schema):
    revision = fields.Integer()
    policy_version = fields.Integer(
        allow_none=True,
        metadata={
            "description": "The stored policy version it was taken with (`authz policy "
            "history`); null while the database stores none."
        },
    )
    # Already plain dicts (Decision.as_dict): passed through, not dumped again.
    decisions = fields.List(
        fields.Raw(metadata={"type": "object", "description": "As the answer of POST /v1/checks."})
    )

    example = {
        "revision": 4471,
        "decisions": [
            DecisionSchema.example,
            {"allowed": False, "revision": 4471, "reason": "role simple: users.manage not granted"},
        ],
    }
