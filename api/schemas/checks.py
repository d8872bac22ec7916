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
    """A single check. The common body — an object whose members are all
    exactly valid — is read by exact_question() without marshmallow's field
    machinery (about 20 µs of a check's server time); any other body goes
    through marshmallow, so that what is accepted and every error are
    marshmallow's (tests/test_checks_batch.py compares both)."""

    at_least_revision = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "Answer from this revision or a newer one, or 503."},
    )
    explain = fields.Boolean(load_default=False)

    def load(self, data, *, many=None, partial=None, unknown=None):
        if many is None and partial is None:
            check = exact_check(data)
            if check is not None:
                return check
        return super().load(data, many=many, partial=partial, unknown=unknown)


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

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not list:
            return super()._deserialize(value, attr, data, **kwargs)
        safe: set[str] = set()
        result = []
        for item in value:
            question = exact_question(item, safe)
            if question is None:
                return super()._deserialize(value, attr, data, **kwargs)  # the errors, as ever
            result.append(question)
        return result


_QUESTION_NAMES = frozenset((*QuestionItem.STRINGS, *QuestionItem.INTS))
_DECISION_NAMES = frozenset(
    ("allowed", "revision", "policy_version", "rule", "reason", "explanation")
)
_CHECK_NAMES = _QUESTION_NAMES | {"at_least_revision", "explain"}


def exact_question(
    item: object, safe: set[str], names: frozenset[str] = _QUESTION_NAMES
) -> dict | None:
    """The question `item` asks when it is an object of no member outside
    `names` whose question members are present where required and exactly of
    their types and sizes (the dict QuestionItem would give), else None:
    marshmallow then reads it, errors and all. `safe`: strings already found
    safe, remembered across calls."""
    if type(item) is not dict or not item.keys() <= names:
        return None
    user_id, structure_id = item.get("user_id"), item.get("structure_id")
    action, space, service = item.get("action"), item.get("space"), item.get("service")
    code_max, id_max = f.CODE_MAX, ID_MAX
    if (
        type(user_id) is int
        and 0 < user_id <= id_max
        and type(structure_id) is int
        and 0 < structure_id <= id_max
        and type(action) is str
        and (action in safe or _safe_code(action, code_max, safe))
        and (
            space is None
            or (type(space) is str and (space in safe or _safe_code(space, code_max, safe)))
        )
        and (
            service is None
            or (type(service) is str and (service in safe or _safe_code(service, code_max, safe)))
        )
    ):
        return {
            "user_id": user_id,
            "structure_id": structure_id,
            "space": space,
            "action": action,
            "service": service,
        }
    return None


def exact_check(data: object) -> dict | None:
    """What CheckSchema loads from `data` when it is an exactly valid check
    (see exact_question), else None: only marshmallow then reads it."""
    question = exact_question(data, set(), _CHECK_NAMES)
    if question is None:
        return None
    revision = data.get("at_least_revision", 0)  # type: ignore[attr-defined]  # a dict: exact_question said so
    explain = data.get("explain", False)  # type: ignore[attr-defined]
    if type(revision) is not int or revision < 0 or type(explain) is not bool:
        return None
    if "at_least_revision" in data:  # type: ignore[operator]
        question["at_least_revision"] = revision
    question["explain"] = explain
    return question


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

    # What each member must be for the answer to be its own dump: marshmallow
    # gives any None as None and a value of exactly these types unchanged
    # (a dict as a copy), in the order of the fields.
    EXACT = (
        ("allowed", bool),
        ("revision", int),
        ("policy_version", int),
        ("rule", str),
        ("reason", str),
        ("explanation", dict),
    )

    def dump(self, obj, *, many=None):
        """Decision.as_dict()'s answer written without marshmallow's field
        machinery when it is already what the dump would give (any other
        object is dumped by marshmallow; tests/test_checks_batch.py compares)."""
        if many is None and type(obj) is dict and obj.keys() <= _DECISION_NAMES:
            out = {}
            for name, kind in self.EXACT:
                if name in obj:
                    value = obj[name]
                    if value is not None and type(value) is not kind:
                        return super().dump(obj, many=many)
                    out[name] = dict(value) if isinstance(value, dict) else value
            return out
        return super().dump(obj, many=many)


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
