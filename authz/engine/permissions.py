""" "What may this user do" and "who may do what here", from the decision index.

Candidates come from the index's memberships (validated attachments), never
from scanning Casbin rows; each candidate right is decided by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import metrics, roles
from ..errors import NotFound
from ..pagination import Page
from ..runtime import Runtime
from .checks import Caller
from .decisions import Decider, Question


@dataclass(frozen=True)
class PermissionPage(Page):
    revision: int = 0
    policy_version: int | None = None


def _rights(decider: Decider, user_id: int, structure_id: int) -> dict[str, Any]:
    today = roles.today()
    management = [
        action
        for action in decider.policy.policies.actions
        if decider.decide(Question(user_id, structure_id, None, action)).allowed
    ]
    grants = [
        {"service": service, "space": space, "actions": actions}
        for service, space, actions in decider.grants(user_id, structure_id, today)
    ]
    return {
        "role": decider.role_of(user_id, structure_id, today),
        "management": management,
        "grants": grants,
    }


def _record(
    rt: Runtime, api: str, caller: Caller, listed: list[tuple[int, int, dict[str, Any]]]
) -> None:
    """Record every right a listing showed (a management action, or an action on
    a space) as the decision that allowed it. Asked again of the decider, which
    answers from its memo: only when the decision log records something."""
    if not rt.recorder.enabled:
        return
    decider = rt.decider
    today = roles.today()
    questions = []
    for user_id, structure_id, item in listed:
        questions += [Question(user_id, structure_id, None, a) for a in item["management"]]
        questions += [
            Question(user_id, structure_id, grant["space"], action, grant["service"])
            for grant in item["grants"]
            for action in grant["actions"]
        ]
    rt.recorder.record(api, caller, ((q, decider.decide(q, today=today)) for q in questions))


def _may_read_access(decider: Decider, caller: Caller, structure_id: int) -> bool:
    if caller.client_id is not None:
        return True
    if caller.user_id is None:
        return False  # neither a client nor a person: nobody to read for
    return decider.decide(Question(caller.user_id, structure_id, None, "access.read")).allowed


def user_permissions(
    rt: Runtime,
    caller: Caller,
    user_id: int,
    *,
    page: int,
    page_size: int,
    at_least_revision: int | None = None,
) -> PermissionPage:
    """Per structure the user is attached to: their role, management actions and
    rights on spaces. A person sees their own rights everywhere, and another
    user's only on structures where they may read access (access.read).

    Raises NotFound (unknown user, or nothing of theirs visible to the caller),
    Unavailable (at_least_revision not reached).
    """
    decider = rt.decider
    with (
        metrics.DecisionTimer("permissions") as count,
        decider.reading(at_least_revision) as revision,
    ):
        if not decider.knows_user(user_id):
            raise NotFound("No such user.")
        structures = decider.structures_of(user_id)
        if caller.user_id != user_id:
            structures = [s for s in structures if _may_read_access(decider, caller, s)]
            if not structures and caller.client_id is None:
                raise NotFound("No such user.")
        chosen = structures[(page - 1) * page_size : page * page_size]
        items = [{"structure_id": sid, **_rights(decider, user_id, sid)} for sid in chosen]
        version = decider.policy_version
        count(len(items), 0, 0)
        _record(rt, "permissions", caller, [(user_id, i["structure_id"], i) for i in items])
    return PermissionPage(
        items=items,
        page=page,
        page_size=page_size,
        total=len(structures),
        revision=revision,
        policy_version=version,
    )


def structure_access(
    rt: Runtime,
    caller: Caller,
    structure_id: int,
    *,
    page: int,
    page_size: int,
    at_least_revision: int | None = None,
) -> PermissionPage:
    """Per user attached to the structure: role, management actions and rights
    on its spaces. For client applications and the structure's managers.

    Raises NotFound (unknown structure, or the caller may not read its access),
    Unavailable (at_least_revision not reached).
    """
    decider = rt.decider
    with metrics.DecisionTimer("access") as count, decider.reading(at_least_revision) as revision:
        if not decider.knows_structure(structure_id) or not _may_read_access(
            decider, caller, structure_id
        ):
            raise NotFound("No such structure.")
        members = decider.members_of(structure_id)
        chosen = members[(page - 1) * page_size : page * page_size]
        items = [{"user_id": uid, **_rights(decider, uid, structure_id)} for uid in chosen]
        version = decider.policy_version
        count(len(items), 0, 0)
        _record(rt, "access", caller, [(i["user_id"], structure_id, i) for i in items])
    return PermissionPage(
        items=items,
        page=page,
        page_size=page_size,
        total=len(members),
        revision=revision,
        policy_version=version,
    )
