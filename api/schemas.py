"""Marshmallow schemas: the API's contract. Unknown fields in a body are refused."""

from __future__ import annotations

import datetime as dt
import functools

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from models import IDENTIFIER_TYPES, STRUCTURE_KINDS

Name = lambda **kw: fields.String(validate=validate.Length(min=1, max=100), **kw)  # noqa: E731
Email = lambda **kw: fields.Email(validate=validate.Length(max=254), **kw)  # noqa: E731


class Problem(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    code = fields.String(metadata={"description": "Stable machine-readable error code."})
    detail = fields.String()
    instance = fields.String()
    request_id = fields.String()
    errors = fields.Dict(metadata={"description": "Field name → messages."})


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "Capped at AUTHZ_PAGE_SIZE_MAX."},
    )


@functools.cache
def page_of(item_schema: type[Schema]) -> type[Schema]:
    """A page envelope: {items, page, page_size, total}."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema)),
            "page": fields.Integer(),
            "page_size": fields.Integer(),
            "total": fields.Integer(),
        },
        name=f"{item_schema.__name__.removesuffix('Schema')}Page",
    )


# --- accounts -----------------------------------------------------------------


class LoginSchema(Schema):
    login_email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(
        required=True, validate=validate.Length(min=1, max=1024), load_only=True
    )


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String(dump_default="Bearer")
    expires_at = fields.DateTime()


class SignUpSchema(Schema):
    login_email = Email(required=True)
    contact_email = Email(metadata={"description": "Defaults to the login email."})
    last_name = Name(required=True)
    first_name = Name(required=True)
    phone = fields.String(validate=validate.Length(max=40), allow_none=True)


class ActivationSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=200))
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=1024)
    )


class ResendActivationSchema(Schema):
    login_email = fields.String(required=True, validate=validate.Length(min=1, max=254))


class UserSchema(Schema):
    id = fields.Integer()
    login_email = fields.String()
    contact_email = fields.String()
    last_name = fields.String()
    first_name = fields.String()
    phone = fields.String(allow_none=True)
    kind = fields.String()
    status = fields.String()
    platform_role = fields.String(allow_none=True)
    created_at = fields.DateTime()
    activated_at = fields.DateTime(allow_none=True)


class ProfilePatchSchema(Schema):
    contact_email = Email()
    last_name = Name()
    first_name = Name()
    phone = fields.String(validate=validate.Length(max=40), allow_none=True)


# --- structures ---------------------------------------------------------------


class StructureSettingsFields(Schema):
    invoice_requires_service = fields.Boolean()
    legal_commitment_required = fields.Boolean()
    default_spaces = fields.List(
        fields.String(validate=validate.Length(max=64)), validate=validate.Length(max=50)
    )


class StructureCreateSchema(StructureSettingsFields):
    identifier_type = fields.String(required=True, validate=validate.OneOf(IDENTIFIER_TYPES))
    identifier_value = fields.String(required=True, validate=validate.Length(min=1, max=80))
    designation = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(
        load_default="private",
        validate=validate.OneOf(STRUCTURE_KINDS),
        metadata={"description": "public: platform operator only."},
    )
    centrally_managed = fields.Boolean(
        metadata={"description": "Public only: run through the state's central pipeline."}
    )
    principal_email = fields.Email(
        metadata={
            "description": "Public only: login email of its principal manager (an "
            "account is created, with its activation mail, if none)."
        }
    )

    @validates_schema
    def _fields_of_kind(self, data, **_kwargs):
        if data.get("kind") == "public":
            wrong = set(StructureSettingsFields._declared_fields) & set(data)
            why = "Settings of a public structure are set by its managers (PATCH)."
        else:
            wrong = {"centrally_managed", "principal_email"} & set(data)
            why = "Only for a public structure."
        if wrong:
            raise ValidationError({name: [why] for name in sorted(wrong)})


class StructurePatchSchema(StructureSettingsFields):
    designation = fields.String(validate=validate.Length(min=1, max=200))


class StructureSchema(Schema):
    id = fields.Integer()
    identifier_type = fields.String()
    identifier_value = fields.String()
    designation = fields.String()
    kind = fields.String()
    status = fields.String()
    centrally_managed = fields.Boolean()
    invoice_requires_service = fields.Boolean()
    legal_commitment_required = fields.Boolean()
    default_spaces = fields.Method("_default_spaces")
    origin_id = fields.Integer(allow_none=True)
    successor_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def _default_spaces(self, obj) -> list[str]:
        return [d.space_code for d in obj.default_spaces]


class StructureQuerySchema(PageArgs):
    q = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Part of the designation or identifier."},
    )
    identifier_value = fields.String(validate=validate.Length(min=1, max=80))
    status = fields.String(validate=validate.OneOf(("active", "inactive")))
    kind = fields.String(validate=validate.OneOf(STRUCTURE_KINDS))


class ServiceSchema(Schema):
    id = fields.Integer(dump_only=True)
    structure_id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    label = fields.String(required=True, validate=validate.Length(min=1, max=200))
    active = fields.Boolean(load_default=True)


class ServicePatchSchema(Schema):
    label = fields.String(validate=validate.Length(min=1, max=200))
    active = fields.Boolean()


class ServiceQuerySchema(PageArgs):
    active = fields.Boolean()


class OpenedSpaceSchema(Schema):
    space = fields.String(
        required=True, attribute="space_code", validate=validate.Length(min=1, max=64)
    )
    service_id = fields.Integer(
        allow_none=True, load_default=None, metadata={"description": "null: the whole structure."}
    )


class OpenedSpacesSchema(Schema):
    spaces = fields.List(
        fields.Nested(OpenedSpaceSchema), required=True, validate=validate.Length(max=2000)
    )


class SpaceSchema(Schema):
    code = fields.String()
    label = fields.String()
    public_only = fields.Boolean()
    opened_by_default = fields.Boolean()
    granted_by_default = fields.Dict(keys=fields.String(), values=fields.String())


# --- decisions ----------------------------------------------------------------


class QuestionSchema(Schema):
    user_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    structure_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    service = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Service code; null or absent: the structure as a whole."},
    )
    space = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "Space code; null or absent: `action` "
            "is a management action (roles.yaml)."
        },
    )
    action = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "consult, modify, create, or a management action."},
    )


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

    def _deserialize(self, value, attr, data, **kwargs):
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
        for name, required in self.STRINGS.items():
            text = value.get(name)
            if text is None:
                if required:
                    errors[name] = ["Missing data for required field."]
            elif not isinstance(text, str) or not 1 <= len(text) <= 64:
                errors[name] = ["Must be a string of 1 to 64 characters."]
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
                    "user_id": {"type": "integer", "minimum": 1},
                    "structure_id": {"type": "integer", "minimum": 1},
                    "service": {"type": ["string", "null"]},
                    "space": {"type": ["string", "null"]},
                    "action": {"type": "string"},
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


class GrantSchema(Schema):
    service = fields.String(
        allow_none=True, metadata={"description": "Service code; null: the whole structure."}
    )
    space = fields.String()
    actions = fields.List(fields.String())


class RightsFields(Schema):
    role = fields.String(
        allow_none=True, metadata={"description": "Role in force today; null: none."}
    )
    management = fields.List(
        fields.String(), metadata={"description": "Management actions allowed."}
    )
    grants = fields.List(fields.Nested(GrantSchema))


class UserRightsSchema(RightsFields):
    structure_id = fields.Integer()


class MemberRightsSchema(RightsFields):
    user_id = fields.Integer()


class RevisionPageArgs(PageArgs):
    at_least_revision = fields.Integer(validate=validate.Range(min=0))


@functools.cache
def revision_page_of(item_schema: type[Schema]) -> type[Schema]:
    """A page envelope that also gives the policy revision it was computed at."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema)),
            "page": fields.Integer(),
            "page_size": fields.Integer(),
            "total": fields.Integer(),
            "revision": fields.Integer(),
            "policy_version": fields.Integer(allow_none=True),
        },
        name=f"{item_schema.__name__.removesuffix('Schema')}Page",
    )


# --- requests, attachments, history -------------------------------------------

Comment = lambda **kw: fields.String(validate=validate.Length(max=2000), allow_none=True, **kw)  # noqa: E731
Ids = lambda: fields.List(
    fields.Integer(validate=validate.Range(min=1)),
    required=True,  # noqa: E731
    validate=validate.Length(min=1, max=200),
)


class RequestQuerySchema(PageArgs):
    structure_id = fields.Integer()
    status = fields.String(validate=validate.OneOf(("pending", "validated", "refused")))
    created_from = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    created_to = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    mine = fields.Boolean(
        load_default=False, metadata={"description": "Only the caller's own requests."}
    )


class AttachmentRequestCreateSchema(Schema):
    structure_id = fields.Integer(required=True)
    whole_structure = fields.Boolean(load_default=True)
    service_ids = fields.List(
        fields.Integer(), load_default=list, validate=validate.Length(max=500)
    )
    comment = Comment()


class RequestFields(Schema):
    """What attachment and subscription requests both show."""

    id = fields.Integer()
    user_id = fields.Integer()
    structure_id = fields.Integer()
    comment = fields.String(allow_none=True)
    status = fields.String()
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    processed_at = fields.DateTime(allow_none=True)
    processed_by_id = fields.Integer(allow_none=True)


class AttachmentRequestSchema(RequestFields):
    whole_structure = fields.Boolean()
    service_ids = fields.Function(lambda r: sorted(s.service_id for s in r.services))
    role = fields.String(allow_none=True)


class ServiceStatusSchema(Schema):
    service_id = fields.Function(lambda s: s.service.id)
    code = fields.Function(lambda s: s.service.code)
    label = fields.Function(lambda s: s.service.label)
    status = fields.String(
        metadata={"description": "pending, validated, deactivated, refused, deleted or none"}
    )
    preselected = fields.Boolean()


class AttachmentRequestDetailSchema(Schema):
    request = fields.Nested(AttachmentRequestSchema)
    structure = fields.Nested(StructureSchema)
    requester = fields.Nested(UserSchema)
    whole_structure_status = fields.String()
    services = fields.List(fields.Nested(ServiceStatusSchema))


# The role at validation: left out, the requester keeps the role they hold on
# the structure (simple for a newcomer), so validating one more service of a
# secondary manager does not demote them.
ValidationRole = lambda: fields.String(  # noqa: E731
    validate=validate.OneOf(("secondary", "simple")),
    metadata={
        "description": "secondary or simple; default: the requester's current role "
        "on the structure, simple for a newcomer."
    },
)


class AttachmentValidationSchema(Schema):
    role = ValidationRole()
    whole_structure = fields.Boolean(
        metadata={"description": "Change the scope (default: the requested one)."}
    )
    service_ids = fields.List(fields.Integer(), validate=validate.Length(max=500))
    valid_from = fields.Date()
    comment = Comment()


class BulkAttachmentValidationSchema(Schema):
    ids = Ids()
    role = ValidationRole()
    valid_from = fields.Date()
    comment = Comment()


class RefusalSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class BulkRefusalSchema(RefusalSchema):
    ids = Ids()


class OutcomeSchema(Schema):
    id = fields.Integer()
    ok = fields.Boolean()
    code = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)


class BulkOutcomeSchema(Schema):
    results = fields.List(fields.Nested(OutcomeSchema))


class LineSchema(Schema):
    id = fields.Integer(dump_only=True)
    space = fields.String(
        required=True, attribute="space_code", validate=validate.Length(min=1, max=64)
    )
    service_id = fields.Integer(allow_none=True, load_default=None)
    level = fields.String(required=True, validate=validate.OneOf(("consult", "modify")))


class SubscriptionRequestCreateSchema(Schema):
    structure_id = fields.Integer(required=True)
    lines = fields.List(
        fields.Nested(LineSchema), required=True, validate=validate.Length(min=1, max=100)
    )
    comment = Comment()


class SubscriptionRequestSchema(RequestFields):
    origin = fields.String()
    manager_comment = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(LineSchema))


class SubscriptionRequestDetailSchema(Schema):
    request = fields.Nested(SubscriptionRequestSchema)
    structure = fields.Nested(StructureSchema)
    requester = fields.Nested(UserSchema)


class LineLevelSchema(Schema):
    id = fields.Integer(required=True)
    level = fields.String(required=True, validate=validate.OneOf(("consult", "modify")))


class SubscriptionValidationSchema(Schema):
    lines = fields.List(
        fields.Nested(LineLevelSchema),
        load_default=list,
        metadata={"description": "Lines whose level the manager switches."},
    )
    comment = Comment()


class BulkSubscriptionValidationSchema(Schema):
    ids = Ids()
    comment = Comment()


class DirectAttachmentSchema(Schema):
    user_id = fields.Integer()
    login_email = fields.String(validate=validate.Length(min=3, max=254))
    role = fields.String(load_default="simple", validate=validate.OneOf(("secondary", "simple")))
    whole_structure = fields.Boolean(required=True)
    service_ids = fields.List(
        fields.Integer(), load_default=list, validate=validate.Length(max=500)
    )
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)
    comment = Comment()


class AttachmentSchema(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    structure_id = fields.Integer()
    service_id = fields.Integer(allow_none=True)
    role = fields.String()
    status = fields.String()
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)


class HistoryQuerySchema(PageArgs):
    since = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    until = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    action = fields.String(
        validate=validate.Length(min=1, max=60),
        metadata={
            "description": "Exact action, or a prefix ending with '.' (e.g. attachment_request.)."
        },
    )
    user_id = fields.Integer(metadata={"description": "As actor or as target."})


class HistoryEntrySchema(Schema):
    id = fields.Integer()
    structure_id = fields.Integer(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    action = fields.String()
    target_user_id = fields.Integer(allow_none=True)
    request_kind = fields.String(allow_none=True)
    request_id = fields.Integer(allow_none=True)
    comment = fields.String(allow_none=True)
    created_at = fields.DateTime()


class HistoryDetailSchema(HistoryEntrySchema):
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)


class LookupQuerySchema(Schema):
    identifier_type = fields.String(required=True, validate=validate.OneOf(IDENTIFIER_TYPES))
    identifier_value = fields.String(required=True, validate=validate.Length(min=1, max=80))


class LookupSchema(Schema):
    id = fields.Integer()
    designation = fields.String()
    kind = fields.String()
    services = fields.Function(
        lambda st: [
            {"id": sv.id, "code": sv.code, "label": sv.label} for sv in st.services if sv.active
        ]
    )


class SuccessorSchema(Schema):
    user_id = fields.Integer()
    login_email = fields.String(validate=validate.Length(min=3, max=254))


class DesignationSchema(SuccessorSchema):
    comment = Comment()


class StructureSuccessorSchema(SuccessorSchema):
    structure_id = fields.Integer(required=True)


class DeactivationSchema(Schema):
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=1024),
        metadata={"description": "Your current password, to confirm."},
    )
    successors = fields.List(
        fields.Nested(StructureSuccessorSchema),
        load_default=list,
        metadata={"description": "A new principal for every structure you lead."},
    )


class ReactivationSchema(LoginSchema):
    pass


class IdentifierChangeSchema(Schema):
    identifier_type = fields.String(required=True, validate=validate.OneOf(IDENTIFIER_TYPES))
    identifier_value = fields.String(required=True, validate=validate.Length(min=1, max=80))
    designation = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Default: the current one."},
    )
    confirm = fields.Boolean(
        required=True, metadata={"description": "Must be true: the structure becomes inactive."}
    )


# --- user administration by managers -------------------------------------------

from models import ATTACHMENT_STATUSES, USER_STATUSES  # noqa: E402

SearchTerm = lambda what: fields.String(  # noqa: E731
    validate=validate.Length(min=1, max=200),
    metadata={"description": f"Part of the {what}; case and accents ignored."},
)


class AccountCreateSchema(SignUpSchema):
    structure_id = fields.Integer(
        validate=validate.Range(min=1),
        metadata={
            "description": "Logged in (required then): the structure the manager "
            "creates the account for (users.manage there). Logged "
            "out: absent."
        },
    )


class UserSearchArgs(PageArgs):
    last_name = SearchTerm("last name")
    first_name = SearchTerm("first name")
    login_email = fields.String(
        validate=validate.Length(min=1, max=254),
        metadata={"description": "Part of the login email; case ignored."},
    )
    status = fields.String(validate=validate.OneOf(USER_STATUSES))
    designation = SearchTerm("designation of a structure the user is attached to")
    service = SearchTerm(
        "code or label of a service the user is attached to (an "
        "attachment to the whole structure counts for all its services)"
    )


class ManagedUserSchema(UserSchema):
    """A user as a manager sees them: never their platform role."""

    class Meta:
        exclude = ("platform_role",)


class ManagedUserDetailSchema(Schema):
    user = fields.Nested(ManagedUserSchema)
    pending_attachment_request_ids = fields.List(
        fields.Integer(),
        metadata={"description": "Open each with GET /v1/attachment-requests/{id}."},
    )


class AttachmentLineSchema(Schema):
    id = fields.Integer(attribute="attachment.id")
    service_id = fields.Integer(
        attribute="attachment.service_id",
        allow_none=True,
        metadata={"description": "null: the whole structure."},
    )
    service_code = fields.Function(lambda line: line.service.code if line.service else None)
    service_label = fields.Function(lambda line: line.service.label if line.service else None)
    role = fields.String(attribute="attachment.role")
    status = fields.String(attribute="attachment.status")
    valid_from = fields.Date(attribute="attachment.valid_from")
    valid_until = fields.Date(attribute="attachment.valid_until", allow_none=True)


class StructureBriefSchema(Schema):
    id = fields.Integer()
    identifier_type = fields.String()
    identifier_value = fields.String()
    designation = fields.String()
    kind = fields.String()
    status = fields.String()


class MembershipSchema(Schema):
    structure = fields.Nested(StructureBriefSchema)
    role = fields.String(
        allow_none=True, metadata={"description": "Strongest validated role in force today."}
    )
    attachments = fields.List(fields.Nested(AttachmentLineSchema))


class MemberSchema(Schema):
    user = fields.Nested(ManagedUserSchema)
    role = fields.String(
        allow_none=True, metadata={"description": "Strongest validated role in force today."}
    )
    attachments = fields.List(fields.Nested(AttachmentLineSchema))


class StructureUsersArgs(PageArgs):
    status = fields.String(
        validate=validate.OneOf(ATTACHMENT_STATUSES),
        metadata={
            "description": "Only attachments in this status (default: every status but deleted)."
        },
    )


class UserIdsSchema(Schema):
    ids = Ids()


class UserExportSchema(Schema):
    ids = fields.List(
        fields.Integer(validate=validate.Range(min=1)),
        required=True,
        validate=validate.Length(min=1, max=5000),
        metadata={
            "description": "Users to export; all must be visible, or 404 and nothing is exported."
        },
    )
