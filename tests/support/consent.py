"""For tests whose subject is not consent: attach a person directly, and when
the service answers with an invitation (202: the account is not the
structure's to attach at once, docs/decisions.md "Consent"), accept it in the
person's name through the workflow, so the test goes on with the attachment
made (tests/support/api.py's `attach_directly` goes through here).
tests/test_invitations.py tests the consent itself."""

from __future__ import annotations

from sqlalchemy import select

from api.schemas import AttachmentSchema
from authz.workflows import invitations
from models import Attachment, Invitation, User


def accept_invitation(rt, invitation_id: int) -> None:
    """The invited person accepts (as POST /v1/me/invitations/{id}/acceptance)."""
    with rt.sessions() as s:
        invitation = s.get(Invitation, invitation_id)
        invitations.accept(s, rt, s.get(User, invitation.user_id), invitation_id)


def attach(manager, structure_id: int, body: dict) -> list[dict]:
    """POST /v1/structures/{id}/attachments with `body` as `manager`; an
    invitation is accepted at once. Returns the person's validated attachments
    to the structure, as the 201 answer gives them."""
    r = manager.post(f"/v1/structures/{structure_id}/attachments", json=body)
    if r.status_code == 201:
        return r.json["attachments"]
    assert r.status_code == 202, r.json
    accept_invitation(manager.rt, r.json["id"])
    with manager.rt.sessions() as s:
        rows = s.scalars(
            select(Attachment).where(
                Attachment.user_id == r.json["user_id"],
                Attachment.structure_id == structure_id,
                Attachment.status == "validated",
            )
        ).all()
        return AttachmentSchema(many=True).dump(rows)
