"""Contracts of the `changes` blueprint (api/changes.py): the change feed."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from authz.engine.changes import LIMIT_MAX

CHANGE_KINDS = ("user", "structure", "membership", "policy", "all")


class ChangesQuerySchema(Schema):
    after_revision = fields.Integer(
        validate=validate.Range(min=0),
        metadata={
            "description": "Give the revisions committed after this one. Absent: no "
            "change, and next_after_revision is the latest revision (where to "
            "start following)."
        },
    )
    limit = fields.Integer(
        load_default=100,
        validate=validate.Range(min=1, max=LIMIT_MAX),
        metadata={"description": "Most revisions in this page."},
    )
    wait = fields.Float(
        load_default=0.0,
        validate=validate.Range(min=0, max=3600),
        metadata={
            "description": "Seconds to wait for a change when there is none yet "
            "(long polling), capped at AUTHZ_CHANGES_WAIT_MAX_SECONDS."
        },
    )


class ChangeSchema(Schema):
    kind = fields.String(
        validate=validate.OneOf(CHANGE_KINDS),
        metadata={
            "description": "user: that user everywhere; structure: that structure; "
            "membership: that user on that structure; policy: a new policy version "
            "in force; all: anything (drop every cached decision)."
        },
    )
    user_id = fields.Integer(allow_none=True)
    structure_id = fields.Integer(allow_none=True)
    policy_version = fields.Integer(allow_none=True)


class RevisionChangesSchema(Schema):
    revision = fields.Integer()
    committed_at = fields.DateTime()
    changes = fields.List(fields.Nested(ChangeSchema))


class ChangePageSchema(Schema):
    revisions = fields.List(fields.Nested(RevisionChangesSchema))
    next_after_revision = fields.Integer(
        metadata={"description": "The after_revision of the next call."}
    )
    latest_revision = fields.Integer()
    more = fields.Boolean(
        metadata={"description": "Later revisions are already committed: ask again at once."}
    )

    example = {
        "revisions": [
            {
                "revision": 4472,
                "committed_at": "2026-02-01T09:30:00+00:00",
                "changes": [
                    {
                        "kind": "membership",
                        "user_id": 43,
                        "structure_id": 12,
                        "policy_version": None,
                    }
                ],
            }
        ],
        "next_after_revision": 4472,
        "latest_revision": 4472,
        "more": False,
    }
