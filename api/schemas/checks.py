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


class QuestionList(fields.List):
    """The questions of a batch: each item as QuestionItem reads it, the common
    case — an object with exactly valid members — read inline.

    Per item, marshmallow's List calls the inner field's `deserialize` (its
    missing/null handling, validators, error collection), which cost as much as
    the decision. An item that is a dict whose members are all present and of
    the right types and sizes gives the same dict QuestionItem would, without
    that call; anything else goes through QuestionItem, so errors (and the
    items that load around them) are exactly marshmallow's
    (tests/test_checks_batch.py compares both on valid and invalid batches).
    Strings already found safe are remembered for the rest of the batch.
    """

    NAMES = frozenset((*QuestionItem.STRINGS, *QuestionItem.INTS))

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not list:
            return super()._deserialize(value, attr, data, **kwargs)
        names, code_max, id_max = self.NAMES, f.CODE_MAX, ID_MAX
        safe: set[str] = set()
        result = []
        for item in value:
            if type(item) is dict and item.keys() <= names:
                user_id, structure_id = item.get("user_id"), item.get("structure_id")
                action, space, service = item.get("action"), item.get("space"), item.get("service")
                if (
                    type(user_id) is int
                    and 0 < user_id <= id_max
                    and type(structure_id) is int
                    and 0 < structure_id <= id_max
                    and type(action) is str
                    and (action in safe or _safe_code(action, code_max, safe))
                    and (
                        space is None
                        or (
                            type(space) is str
                            and (space in safe or _safe_code(space, code_max, safe))
                        )
                    )
                    and (
                        service is None
                        or (
                            type(service) is str
                            and (service in safe or _safe_code(service, code_max, safe))
                        )
                    )
                ):
                    result.append(
                        {
                            "user_id": user_id,
                            "structure_id": structure_id,
                            "space": space,
                            "action": action,
                            "service": service,
                        }
                    )
                    continue
            return super()._deserialize(value, attr, data, **kwargs)  # the errors, as ever
        return result


def _safe_code(text: str, code_max: int, safe: set[str]) -> bool:
    """Whether `text` is a code QuestionItem accepts (remembered in `safe`)."""
    if 0 < len(text) <= code_max and f.unsafe_text(text) is None:
        safe.add(text)
        return True
    return False


class BatchSchema(Schema):
    checks = QuestionList(
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
    decisions = f.WrittenList(
        fields.Raw(metadata={"type": "object", "description": "As the answer of POST /v1/checks."})
    )

    example = {
        "revision": 4471,
        "decisions": [
            DecisionSchema.example,
            {"allowed": False, "revision": 4471, "reason": "role simple: users.manage not granted"},
        ],
    }
