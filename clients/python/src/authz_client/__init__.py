"""Python client of the authorization service (docs/clients.md).

from authz_client import AuthzClient, Question

with AuthzClient("https://authz.example.org", api_key=KEY) as authz:
    if authz.check(user_id, structure_id, "issued_invoices", "consult"):
        ...
"""

from __future__ import annotations

from .cache import DecisionCache
from .client import REVISION_HEADER, AuthzClient, AuthzError, ChangesGone, Decision, Question
from .middleware import AuthzMiddleware, require

__all__ = [
    "REVISION_HEADER",
    "AuthzClient",
    "AuthzError",
    "AuthzMiddleware",
    "ChangesGone",
    "Decision",
    "DecisionCache",
    "Question",
    "require",
]
