"""The security team's tools: the review report's findings (reports.py), the
effective-rights and Casbin policy exports (exports.py), policy tests as data
(policytest.py) and the fixture worlds they and the decision matrix load
(fixtures.py). Only an active account with the platform role
'security_reviewer' may read the report and the exports (require_reviewer)."""

from __future__ import annotations

from models import User

from ..errors import Forbidden

REVIEWER = "security_reviewer"


def require_reviewer(user: User) -> None:
    """Raises Forbidden `reviewer_only` unless `user` is an active security
    reviewer (operators run the service, reviewers audit it)."""
    if user.platform_role != REVIEWER or user.status != "active":
        raise Forbidden(
            "Only a security reviewer may read exports and review reports.", code="reviewer_only"
        )
