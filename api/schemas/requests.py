"""Contracts of the attachment-request and subscription-request blueprints
(api/requests.py): ask, list, open, validate, refuse, one by one or in bulk."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from marshmallow import Schema, fields, validate

from models import ATTACHMENT_STATUSES, REQUEST_STATUSES

from . import fields as f
from .accounts import UserSchema
from .common import OutcomeSchema, PageArgs
from .structures import StructureSchema
from .users import AttachmentLineSchema

SERVICES_MAX = 500
LINES_MAX = 100


class RequestQuerySchema(PageArgs):
    structure_id = f.record_id()
    status = f.one_of(REQUEST_STATUSES)
    created_from = fields.AwareDateTime(default_timezone=dt.UTC)
    created_to = fields.AwareDateTime(default_timezone=dt.UTC)
    mine = fields.Boolean(
        load_default=False, metadata={"description": "Only the caller's own requests."}
    )


class RequesterSchema(Schema):
    """Who made a request: what a manager needs to recognise the person."""

    id = fields.Integer()
    first_name = fields.String()
    last_name = fields.String()
    login_email = fields.String()

    example = {
        "id": 43,
        "first_name": "Lucie",
        "last_name": "Petit",
        "login_email": "lucie.petit@example.org",
    }


class RequestFields(Schema):
    """What attachment and subscription requests both show."""

    id = fields.Integer()
    user_id = fields.Integer()
    user = fields.Nested(RequesterSchema, metadata={"description": "The requester."})
    structure_id = fields.Integer()
    comment = fields.String(allow_none=True)
    status = fields.String()
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    processed_at = fields.DateTime(allow_none=True)
    processed_by_id = fields.Integer(allow_none=True)


class RefusalSchema(Schema):
    reason = f.reason()

    example: ClassVar[dict[str, object]] = {"reason": "You do not work for this structure."}


class BulkRefusalSchema(RefusalSchema):
    ids = f.ids()

    example = {"ids": [31, 32], "reason": "You do not work for this structure."}


def _service_ids(**kwargs: Any) -> fields.List:
    return fields.List(f.service_ref(), validate=validate.Length(max=SERVICES_MAX), **kwargs)


# --- attachment requests --------------------------------------------------------


class AttachmentRequestCreateSchema(Schema):
    structure_id = f.record_id(required=True)
    whole_structure = fields.Boolean(load_default=True)
    service_ids = _service_ids(load_default=list)
    comment = f.comment()

    example = {
        "structure_id": 12,
        "whole_structure": False,
        "service_ids": [7],
        "comment": "I keep the accounts of the bakery.",
    }


class AttachmentRequestSchema(RequestFields):
    whole_structure = fields.Boolean()
    service_ids = fields.Function(lambda r: sorted(s.service_id for s in r.services))
    role = fields.String(allow_none=True)

    example = {
        "id": 31,
        "user_id": 43,
        "user": RequesterSchema.example,
        "structure_id": 12,
        "comment": "I keep the accounts of the bakery.",
        "status": "pending",
        "reason": None,
        "created_at": "2026-01-28T14:02:00+00:00",
        "processed_at": None,
        "processed_by_id": None,
        "whole_structure": False,
        "service_ids": [7],
        "role": None,
    }


class HoldingSchema(Schema):
    """What the user holds on the structure after the validation: not only what
    was asked — services validated earlier stay."""

    user_id = fields.Integer()
    structure_id = fields.Integer()
    role = fields.String(allow_none=True, metadata={"description": "The validated role."})
    whole_structure = fields.Boolean()
    service_ids = fields.List(
        fields.Integer(), metadata={"description": "Every service held (empty: whole structure)."}
    )
    attachments = fields.List(
        fields.Nested(AttachmentLineSchema),
        metadata={"description": "The validated attachments, with their dates."},
    )

    example = {
        "user_id": 43,
        "structure_id": 12,
        "role": "simple",
        "whole_structure": False,
        "service_ids": [7, 9],
        "attachments": [
            AttachmentLineSchema.example,
            {
                **AttachmentLineSchema.example,
                "id": 91,
                "service_id": 9,
                "service_code": "SHOP",
                "service_label": "Shop",
            },
        ],
    }


class AttachmentValidatedSchema(AttachmentRequestSchema):
    attachment = fields.Nested(HoldingSchema)

    example = {
        **AttachmentRequestSchema.example,
        "status": "validated",
        "processed_at": "2026-01-29T09:00:00+00:00",
        "processed_by_id": 42,
        "role": "simple",
        "attachment": HoldingSchema.example,
    }


class ValidationOutcomeSchema(OutcomeSchema):
    attachment = fields.Nested(
        HoldingSchema,
        attribute="result.attachment",
        metadata={"description": "What the user now holds; only when validated."},
    )

    example = {**OutcomeSchema.example, "attachment": HoldingSchema.example}


class BulkValidationOutcomeSchema(Schema):
    results = fields.List(fields.Nested(ValidationOutcomeSchema))

    example = {
        "results": [
            ValidationOutcomeSchema.example,
            {"id": 32, "ok": False, "code": "request_processed", "detail": "Already processed."},
        ]
    }


class ServiceStatusSchema(Schema):
    service_id = fields.Function(lambda s: s.service.id)
    code = fields.Function(lambda s: s.service.code)
    label = fields.Function(lambda s: s.service.label)
    status = fields.String(metadata={"description": f"{', '.join(ATTACHMENT_STATUSES)} or none"})
    preselected = fields.Boolean()

    example = {
        "service_id": 7,
        "code": "ACCOUNTING",
        "label": "Accounting",
        "status": "pending",
        "preselected": True,
    }


class AttachmentRequestDetailSchema(Schema):
    request = fields.Nested(AttachmentRequestSchema)
    structure = fields.Nested(StructureSchema)
    requester = fields.Nested(UserSchema)
    whole_structure_status = fields.String()
    services = fields.List(fields.Nested(ServiceStatusSchema))

    example = {
        "request": AttachmentRequestSchema.example,
        "structure": StructureSchema.example,
        "requester": UserSchema.example,
        "whole_structure_status": "none",
        "services": [ServiceStatusSchema.example],
    }


def _validation_role() -> fields.String:
    """The role at validation: left out, the requester keeps the role they hold
    on the structure (simple for a newcomer), so validating one more service of
    a secondary manager does not demote them."""
    return f.requestable_role(
        description="Default: the requester's current role on the structure, simple for a newcomer."
    )


class AttachmentValidationSchema(Schema):
    role = _validation_role()
    whole_structure = fields.Boolean(
        metadata={"description": "Change the scope (default: the requested one)."}
    )
    service_ids = _service_ids()
    valid_from = fields.Date()
    comment = f.comment()

    example = {"role": "simple", "valid_from": "2026-02-01", "comment": "Welcome."}


class BulkAttachmentValidationSchema(Schema):
    ids = f.ids()
    role = _validation_role()
    valid_from = fields.Date()
    comment = f.comment()

    example = {"ids": [31, 32], "role": "simple", "comment": "Welcome."}


# --- subscription requests ------------------------------------------------------


class LineSchema(Schema):
    id = fields.Integer(dump_only=True)
    space = f.code(required=True, attribute="space_code")
    service_id = f.service_ref(
        allow_none=True,
        load_default=None,
        description="A service (its id or its code); null: all services. Answered as the id.",
    )
    level = f.level(required=True)

    example = {"id": 51, "space": "issued_invoices", "service_id": None, "level": "consult"}


class SubscriptionRequestCreateSchema(Schema):
    structure_id = f.record_id(required=True)
    lines = fields.List(
        fields.Nested(LineSchema), required=True, validate=validate.Length(min=1, max=LINES_MAX)
    )
    comment = f.comment()

    example = {
        "structure_id": 12,
        "lines": [
            {"space": "issued_invoices", "service_id": None, "level": "consult"},
            {"space": "received_invoices", "service_id": 7, "level": "modify"},
        ],
        "comment": "To follow the invoices of the accounting service.",
    }


class SubscriptionRequestSchema(RequestFields):
    origin = fields.String()
    manager_comment = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(LineSchema))

    example = {
        "id": 77,
        "user_id": 43,
        "user": RequesterSchema.example,
        "structure_id": 12,
        "comment": "To follow the invoices of the accounting service.",
        "status": "pending",
        "reason": None,
        "created_at": "2026-02-02T10:00:00+00:00",
        "processed_at": None,
        "processed_by_id": None,
        "origin": "manual",
        "manager_comment": None,
        "lines": [LineSchema.example],
    }


class SubscriptionRequestDetailSchema(Schema):
    request = fields.Nested(SubscriptionRequestSchema)
    structure = fields.Nested(StructureSchema)
    requester = fields.Nested(UserSchema)

    example = {
        "request": SubscriptionRequestSchema.example,
        "structure": StructureSchema.example,
        "requester": UserSchema.example,
    }


class LineLevelChangeSchema(Schema):
    id = f.record_id(required=True)
    level = f.level(required=True)


class SubscriptionValidationSchema(Schema):
    lines = fields.List(
        fields.Nested(LineLevelChangeSchema),
        load_default=list,
        metadata={"description": "Lines whose level the manager switches."},
    )
    comment = f.comment()

    example = {"lines": [{"id": 51, "level": "modify"}], "comment": "Granted."}


class BulkSubscriptionValidationSchema(Schema):
    ids = f.ids()
    comment = f.comment()

    example = {"ids": [77, 78], "comment": "Granted."}
