"""SQLAlchemy 2 declarative models of the service, and nothing else."""

from .access import (
    ATTACHMENT_STATUSES,
    LEVELS,
    REQUEST_STATUSES,
    ROLES,
    Attachment,
    AttachmentRequest,
    AttachmentRequestService,
    Subscription,
    SubscriptionRequest,
    SubscriptionRequestLine,
)
from .accounts import (
    PLATFORM_ROLES,
    USER_STATUSES,
    ActivationToken,
    AuthToken,
    ClientApplication,
    LoginThrottle,
    User,
)
from .base import Base, utcnow
from .operations import (
    HistoryEntry,
    OutboxMail,
    PolicyChange,
    PolicyRevision,
    PolicyVersion,
    SchemaCompatibility,
)
from .structures import (
    IDENTIFIER_TYPES,
    STRUCTURE_KINDS,
    OpenedSpace,
    Service,
    Space,
    Structure,
    StructureDefaultSpace,
)
from .technical import TechnicalCredential

__all__ = [
    "Base",
    "utcnow",
    "Space",
    "Structure",
    "Service",
    "StructureDefaultSpace",
    "OpenedSpace",
    "User",
    "AuthToken",
    "ActivationToken",
    "LoginThrottle",
    "ClientApplication",
    "Attachment",
    "Subscription",
    "AttachmentRequest",
    "AttachmentRequestService",
    "SubscriptionRequest",
    "SubscriptionRequestLine",
    "HistoryEntry",
    "OutboxMail",
    "PolicyRevision",
    "PolicyVersion",
    "PolicyChange",
    "SchemaCompatibility",
    "TechnicalCredential",
    "IDENTIFIER_TYPES",
    "STRUCTURE_KINDS",
    "USER_STATUSES",
    "PLATFORM_ROLES",
    "ROLES",
    "ATTACHMENT_STATUSES",
    "LEVELS",
    "REQUEST_STATUSES",
]
