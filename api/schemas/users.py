"""Contracts of the `users` blueprint (api/users.py): the administration of
users by the managers of their structures."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models import ATTACHMENT_STATUSES, USER_STATUSES

from . import fields as f
from .accounts import UserSchema
from .common import PageArgs
from .structures import StructureSchema

EXPORT_MAX = 5000


class UserSearchArgs(PageArgs):
    last_name = f.search_term("last name")
    first_name = f.search_term("first name")
    login_email = f.text(1, f.EMAIL_MAX, description="Part of the login email; case ignored.")
    status = f.one_of(USER_STATUSES)
    designation = f.search_term("designation of a structure the user is attached to")
    service = f.search_term(
        "code or label of a service the user is attached to (an "
        "attachment to the whole structure counts for all its services)"
    )


class ManagedUserSchema(UserSchema):
    """A user as a manager sees them: never their platform role."""

    class Meta:
        exclude = ("platform_role",)

    example = {k: v for k, v in UserSchema.example.items() if k != "platform_role"}


class ManagedUserDetailSchema(Schema):
    user = fields.Nested(ManagedUserSchema)
    pending_attachment_request_ids = fields.List(
        fields.Integer(),
        metadata={"description": "Open each with GET /v1/attachment-requests/{id}."},
    )

    example = {"user": ManagedUserSchema.example, "pending_attachment_request_ids": [31]}


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

    example = {
        "id": 88,
        "service_id": 7,
        "service_code": "ACCOUNTING",
        "service_label": "Accounting",
        "role": "simple",
        "status": "validated",
        "valid_from": "2026-02-01",
        "valid_until": None,
    }


BRIEF = ("id", "identifier_type", "identifier_value", "designation", "kind", "status")


class StructureBriefSchema(StructureSchema):
    """A structure in a list of memberships: who it is, not its settings."""

    class Meta:
        fields = BRIEF

    example = {k: v for k, v in StructureSchema.example.items() if k in BRIEF}


def _role_in_force() -> fields.String:
    return fields.String(
        allow_none=True, metadata={"description": "Strongest validated role in force today."}
    )


class MembershipSchema(Schema):
    structure = fields.Nested(StructureBriefSchema)
    role = _role_in_force()
    attachments = fields.List(fields.Nested(AttachmentLineSchema))

    example = {
        "structure": StructureBriefSchema.example,
        "role": "simple",
        "attachments": [AttachmentLineSchema.example],
    }


class MemberSchema(Schema):
    user = fields.Nested(ManagedUserSchema)
    role = _role_in_force()
    attachments = fields.List(fields.Nested(AttachmentLineSchema))

    example = {
        "user": ManagedUserSchema.example,
        "role": "simple",
        "attachments": [AttachmentLineSchema.example],
    }


class StructureUsersArgs(PageArgs):
    status = f.one_of(
        ATTACHMENT_STATUSES,
        description="Only attachments in this status (default: every status but deleted).",
    )


class UserIdsSchema(Schema):
    ids = f.ids()

    example = {"ids": [43, 44]}


class UserExportSchema(Schema):
    ids = f.ids(
        EXPORT_MAX,
        metadata={
            "description": "Users to export; all must be visible, or 404 and nothing is exported."
        },
    )

    example = {"ids": [42, 43, 44]}


class RoleChangeSchema(Schema):
    role = f.requestable_role(required=True)
    comment = f.comment()

    example = {"role": "secondary", "comment": "Takes over the accounting team."}


class ServicesAddSchema(Schema):
    service_ids = fields.List(
        f.service_ref(), required=True, validate=validate.Length(min=1, max=500)
    )
    valid_from = fields.Date(metadata={"description": "Default: today (UTC)."})
    comment = f.comment()

    example = {"service_ids": [7], "valid_from": "2026-02-01", "comment": "Also the shop."}


class MemberSubscriptionSchema(Schema):
    id = fields.Integer()
    space = fields.String(attribute="space_code")
    service_id = fields.Integer(allow_none=True, metadata={"description": "null: all services."})
    level = fields.String()
    status = fields.String(metadata={"description": "validated, or deactivated (revoked)."})
    granted_by_id = fields.Integer(allow_none=True)

    example = {
        "id": 12,
        "space": "issued_invoices",
        "service_id": None,
        "level": "modify",
        "status": "validated",
        "granted_by_id": 1,
    }


class MemberSubscriptionsSchema(Schema):
    items = fields.List(fields.Nested(MemberSubscriptionSchema))

    example = {"items": [MemberSubscriptionSchema.example]}


class ManagedStructureSchema(Schema):
    structure = fields.Nested(StructureBriefSchema)
    role = fields.String(metadata={"description": "principal or secondary, in force today."})
    pending_attachment_requests = fields.Integer(
        allow_none=True,
        metadata={
            "description": "Pending attachment requests of others here; null: not "
            "processable here (e.g. an inactive structure)."
        },
    )
    pending_subscription_requests = fields.Integer(
        allow_none=True,
        metadata={"description": "Pending subscription requests of others here."},
    )

    example = {
        "structure": StructureBriefSchema.example,
        "role": "principal",
        "pending_attachment_requests": 2,
        "pending_subscription_requests": 1,
    }


class ManagerSummarySchema(Schema):
    structures = fields.List(fields.Nested(ManagedStructureSchema))
    pending_attachment_requests = fields.Integer(metadata={"description": "Sum over structures."})
    pending_subscription_requests = fields.Integer(metadata={"description": "Sum over structures."})

    example = {
        "structures": [ManagedStructureSchema.example],
        "pending_attachment_requests": 2,
        "pending_subscription_requests": 1,
    }
