"""Contracts of the `structures` blueprint (api/structures.py): structures,
their services, the spaces opened on them, direct attachments and the look-up
by identifier."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from models import IDENTIFIER_TYPES, STRUCTURE_KINDS, STRUCTURE_STATUSES, Structure

from . import fields as f
from .common import REVISION, REVISION_EXAMPLE, PageArgs


class StructureSettingsFields(Schema):
    invoice_requires_service = fields.Boolean()
    legal_commitment_required = fields.Boolean()
    default_spaces = fields.List(f.text(max_length=f.CODE_MAX), validate=validate.Length(max=50))


# The names of the settings, which only a private structure is created with.
SETTINGS = frozenset(StructureSettingsFields().fields)


class StructureCreateSchema(StructureSettingsFields):
    identifier_type = f.one_of(IDENTIFIER_TYPES, required=True)
    identifier_value = f.identifier_value(required=True)
    designation = f.designation(required=True)
    kind = f.one_of(
        STRUCTURE_KINDS, load_default="private", description="public: platform operator only."
    )
    centrally_managed = fields.Boolean(
        metadata={"description": "Public only: run through the state's central pipeline."}
    )
    principal_email = f.email(
        description="Public only: login email of its principal manager (an "
        "account is created, with its activation mail, if none)."
    )

    @validates_schema
    def _fields_of_kind(self, data, **_kwargs):
        if data.get("kind") == "public":
            wrong = set(data) & SETTINGS
            why = "Settings of a public structure are set by its managers (PATCH)."
        else:
            wrong = {"centrally_managed", "principal_email"} & set(data)
            why = "Only for a public structure."
        if wrong:
            raise ValidationError({name: [why] for name in sorted(wrong)})

    example = {
        "identifier_type": "SIRET",
        "identifier_value": "73282932000074",
        "designation": "Boulangerie Martin",
        "invoice_requires_service": False,
        "default_spaces": ["issued_invoices", "received_invoices"],
    }


class StructurePatchSchema(StructureSettingsFields):
    designation = f.designation()

    example = {"designation": "Boulangerie Martin et Fils", "legal_commitment_required": True}


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

    def _default_spaces(self, obj: Structure) -> list[str]:
        return [d.space_code for d in obj.default_spaces]

    example = {
        "id": 12,
        "identifier_type": "SIRET",
        "identifier_value": "73282932000074",
        "designation": "Boulangerie Martin",
        "kind": "private",
        "status": "active",
        "centrally_managed": False,
        "invoice_requires_service": False,
        "legal_commitment_required": False,
        "default_spaces": ["issued_invoices", "received_invoices"],
        "origin_id": None,
        "successor_id": None,
        "created_at": "2026-01-05T09:30:00+00:00",
        "updated_at": "2026-01-05T09:30:00+00:00",
    }


class StructureQuerySchema(PageArgs):
    q = f.text(1, f.SEARCH_MAX, description="Part of the designation or identifier.")
    identifier_value = f.identifier_value()
    status = f.one_of(STRUCTURE_STATUSES)
    kind = f.one_of(STRUCTURE_KINDS)


class ServiceSchema(Schema):
    id = fields.Integer(dump_only=True)
    structure_id = fields.Integer(dump_only=True)
    code = f.code(required=True)
    label = f.text(1, f.LABEL_MAX, required=True)
    active = fields.Boolean(load_default=True)

    example = {
        "id": 7,
        "structure_id": 12,
        "code": "ACCOUNTING",
        "label": "Accounting",
        "active": True,
    }


class ServicePatchSchema(Schema):
    label = f.text(1, f.LABEL_MAX)
    active = fields.Boolean()

    example = {"label": "Accounting and payroll"}


class ServiceQuerySchema(PageArgs):
    active = fields.Boolean()


class OpenedSpaceSchema(Schema):
    space = f.code(required=True, attribute="space_code")
    service_id = f.service_ref(
        allow_none=True,
        load_default=None,
        description="A service (its id or its code); null: the whole structure.",
    )


class OpenedSpacesSchema(Schema):
    spaces = fields.List(
        fields.Nested(OpenedSpaceSchema), required=True, validate=validate.Length(max=2000)
    )

    example = {
        "spaces": [
            {"space": "issued_invoices", "service_id": None},
            {"space": "received_invoices", "service_id": 7},
        ]
    }


class DirectAttachmentSchema(Schema):
    user_id = f.record_id()
    login_email = f.text(3, f.EMAIL_MAX)
    role = f.requestable_role(description="Default: simple.")
    whole_structure = fields.Boolean(required=True)
    service_ids = fields.List(f.service_ref(), load_default=list, validate=validate.Length(max=500))
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)
    comment = f.comment()

    example = {
        "login_email": "lucie.bernard@example.org",
        "role": "simple",
        "whole_structure": False,
        "service_ids": [7],
        "valid_from": "2026-02-01",
        "comment": "Joins the accounting team.",
    }


class AttachmentSchema(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    structure_id = fields.Integer()
    service_id = fields.Integer(allow_none=True)
    role = fields.String()
    status = fields.String()
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)

    example = {
        "id": 88,
        "user_id": 43,
        "structure_id": 12,
        "service_id": 7,
        "role": "simple",
        "status": "validated",
        "valid_from": "2026-02-01",
        "valid_until": None,
    }


class AttachmentsWrittenSchema(Schema):
    """A direct attachment's answer: the attachments written and their revision."""

    attachments = fields.List(fields.Nested(AttachmentSchema))
    revision = REVISION

    example = {"attachments": [AttachmentSchema.example], "revision": REVISION_EXAMPLE}


class LookupQuerySchema(Schema):
    identifier_type = f.one_of(IDENTIFIER_TYPES, required=True)
    identifier_value = f.identifier_value(required=True)


class LookupSchema(Schema):
    id = fields.Integer()
    designation = fields.String()
    kind = fields.String()
    services = fields.Function(
        lambda st: [
            {"id": sv.id, "code": sv.code, "label": sv.label} for sv in st.services if sv.active
        ]
    )

    example = {
        "id": 12,
        "designation": "Boulangerie Martin",
        "kind": "private",
        "services": [{"id": 7, "code": "ACCOUNTING", "label": "Accounting"}],
    }


class CandidateArgs(Schema):
    login_email = f.text(1, f.EMAIL_MAX, description="The exact login email; case ignored.")
    last_name = f.text(1, f.SEARCH_MAX, description="The whole last name, with first_name.")
    first_name = f.text(1, f.SEARCH_MAX, description="The whole first name, with last_name.")


class CandidateSchema(Schema):
    """A person one may attach: who they are, nothing more."""

    id = fields.Integer()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    login_email = fields.String()

    example = {
        "id": 43,
        "first_name": "Lucie",
        "last_name": "Petit",
        "login_email": "lucie.petit@example.org",
    }


class CandidatesSchema(Schema):
    candidates = fields.List(fields.Nested(CandidateSchema))

    example = {"candidates": [CandidateSchema.example]}
