"""Attachment and subscription requests: ask, list, open, validate, refuse,
unit and bulk. The two families share their shape; each route calls one
workflow of authz/workflows/attachments.py or authz/workflows/subscriptions.py."""

from __future__ import annotations

from flask.views import MethodView

from authz.workflows import attachments, subscriptions

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, runtime
from .paging import page_args
from .revisions import revisioned

attachment_blp = Blueprint(
    "attachment_requests",
    __name__,
    url_prefix="/v1/attachment-requests",
    description="Attachment requests",
)
subscription_blp = Blueprint(
    "subscription_requests",
    __name__,
    url_prefix="/v1/subscription-requests",
    description="Subscription requests",
)


def _list(module, args):
    return module.list_requests(
        db(),
        runtime(),
        current_user(),
        **page_args(args),
        structure_id=args.get("structure_id"),
        status=args.get("status"),
        created_from=args.get("created_from"),
        created_to=args.get("created_to"),
        mine=args["mine"],
    )


def _outcomes(outcomes):
    return {"results": outcomes}


# --- attachment requests --------------------------------------------------------


@attachment_blp.route("")
class AttachmentRequests(MethodView):
    @attachment_blp.operation("list_attachment_requests")
    @attachment_blp.arguments(s.RequestQuerySchema, location="query")
    @attachment_blp.response(200, s.page_of(s.AttachmentRequestSchema))
    def get(self, args):
        """Requests on the structures the caller manages, and the caller's own."""
        return _list(attachments, args)

    @attachment_blp.operation("create_attachment_request")
    @attachment_blp.problem(404, "No such structure, or not visible")
    @attachment_blp.arguments(s.AttachmentRequestCreateSchema)
    @attachment_blp.response(201, s.AttachmentRequestSchema)
    @attachment_blp.problem(409, "Structure inactive, or a request pending")
    def post(self, body):
        """Ask to be attached to a structure (whole, or some services), with a comment."""
        return attachments.create_request(db(), runtime(), current_user(), **body)


@attachment_blp.route("/<id:request_id>")
class AttachmentRequestById(MethodView):
    @attachment_blp.operation("get_attachment_request")
    @attachment_blp.response(200, s.AttachmentRequestDetailSchema)
    @attachment_blp.problem(404, "Unknown or not visible")
    def get(self, request_id):
        """One request: structure, requester, comment, and every active service with
        the requester's current status and the preselection (pending + validated)."""
        return attachments.request_detail(db(), runtime(), current_user(), request_id)


@attachment_blp.route("/<id:request_id>/validation")
class AttachmentValidation(MethodView):
    @attachment_blp.operation("validate_attachment_request")
    @attachment_blp.problem(403, "The caller may not process the structure's requests")
    @attachment_blp.arguments(s.AttachmentValidationSchema)
    @attachment_blp.response(200, s.written(s.AttachmentValidatedSchema))
    @attachment_blp.problem(409, "Already processed")
    @revisioned
    def post(self, body, request_id):
        """Validate, optionally changing the role and the services. The answer is
        the request and, as `attachment`, what the user now holds there."""
        return attachments.validate_request(db(), runtime(), current_user(), request_id, **body)


@attachment_blp.route("/<id:request_id>/refusal")
class AttachmentRefusal(MethodView):
    @attachment_blp.operation("refuse_attachment_request")
    @attachment_blp.problem(403, "The caller may not process the structure's requests")
    @attachment_blp.arguments(s.RefusalSchema)
    @attachment_blp.response(200, s.written(s.AttachmentRequestSchema))
    @attachment_blp.problem(409, "Already processed")
    @revisioned
    def post(self, body, request_id):
        """Refuse, with a reason."""
        return attachments.refuse_request(
            db(), runtime(), current_user(), request_id, reason=body["reason"]
        )


@attachment_blp.route("/validations")
class AttachmentValidations(MethodView):
    @attachment_blp.operation("validate_attachment_requests")
    @attachment_blp.arguments(s.BulkAttachmentValidationSchema)
    @attachment_blp.response(200, s.written(s.BulkValidationOutcomeSchema))
    @revisioned
    def post(self, body):
        """Validate several requests with the same options; one outcome per
        request, with what the user now holds (`attachment`) when validated."""
        ids = body.pop("ids")
        return _outcomes(attachments.validate_many(db(), runtime(), current_user(), ids, **body))


@attachment_blp.route("/refusals")
class AttachmentRefusals(MethodView):
    @attachment_blp.operation("refuse_attachment_requests")
    @attachment_blp.arguments(s.BulkRefusalSchema)
    @attachment_blp.response(200, s.written(s.BulkOutcomeSchema))
    @revisioned
    def post(self, body):
        """Refuse several requests with one reason; one outcome per request."""
        return _outcomes(
            attachments.refuse_many(
                db(), runtime(), current_user(), body["ids"], reason=body["reason"]
            )
        )


# --- subscription requests ------------------------------------------------------


def _lines(body_lines):
    return [
        {"space": line["space_code"], "service_id": line.get("service_id"), "level": line["level"]}
        for line in body_lines
    ]


@subscription_blp.route("")
class SubscriptionRequests(MethodView):
    @subscription_blp.operation("list_subscription_requests")
    @subscription_blp.arguments(s.RequestQuerySchema, location="query")
    @subscription_blp.response(200, s.page_of(s.SubscriptionRequestSchema))
    def get(self, args):
        """Requests on the structures the caller manages, and the caller's own."""
        return _list(subscriptions, args)

    @subscription_blp.operation("create_subscription_request")
    @subscription_blp.problem(404, "No such structure, or not visible")
    @subscription_blp.problem(409, "The structure is inactive, or a request is pending")
    @subscription_blp.arguments(s.SubscriptionRequestCreateSchema)
    @subscription_blp.response(201, s.SubscriptionRequestSchema)
    @subscription_blp.problem(
        422, "Space unknown, not opened, or public-only on a private structure"
    )
    def post(self, body):
        """Ask for spaces of a structure one is attached to: lines of (space, all
        services or one, consult or modify), with a comment."""
        return subscriptions.create_request(
            db(),
            runtime(),
            current_user(),
            structure_id=body["structure_id"],
            lines=_lines(body["lines"]),
            comment=body.get("comment"),
        )


@subscription_blp.route("/<id:request_id>")
class SubscriptionRequestById(MethodView):
    @subscription_blp.operation("get_subscription_request")
    @subscription_blp.response(200, s.SubscriptionRequestDetailSchema)
    @subscription_blp.problem(404, "Unknown or not visible")
    def get(self, request_id):
        """One request: its lines and comment, with the structure and the requester."""
        return subscriptions.request_detail(db(), runtime(), current_user(), request_id)


@subscription_blp.route("/<id:request_id>/validation")
class SubscriptionValidation(MethodView):
    @subscription_blp.operation("validate_subscription_request")
    @subscription_blp.problem(403, "The caller may not process the structure's requests")
    @subscription_blp.arguments(s.SubscriptionValidationSchema)
    @subscription_blp.response(200, s.written(s.SubscriptionRequestSchema))
    @subscription_blp.problem(409, "Already processed")
    @revisioned
    def post(self, body, request_id):
        """Validate, switching any line between consult and modify, with a comment."""
        return subscriptions.validate_request(
            db(),
            runtime(),
            current_user(),
            request_id,
            levels={line["id"]: line["level"] for line in body["lines"]},
            comment=body.get("comment"),
        )


@subscription_blp.route("/<id:request_id>/refusal")
class SubscriptionRefusal(MethodView):
    @subscription_blp.operation("refuse_subscription_request")
    @subscription_blp.problem(403, "The caller may not process the structure's requests")
    @subscription_blp.arguments(s.RefusalSchema)
    @subscription_blp.response(200, s.written(s.SubscriptionRequestSchema))
    @subscription_blp.problem(409, "Already processed")
    @revisioned
    def post(self, body, request_id):
        """Refuse, with a reason (history: Deactivated)."""
        return subscriptions.refuse_request(
            db(), runtime(), current_user(), request_id, reason=body["reason"]
        )


@subscription_blp.route("/validations")
class SubscriptionValidations(MethodView):
    @subscription_blp.operation("validate_subscription_requests")
    @subscription_blp.arguments(s.BulkSubscriptionValidationSchema)
    @subscription_blp.response(200, s.written(s.BulkOutcomeSchema))
    @revisioned
    def post(self, body):
        """Validate several requests as asked; one outcome per request."""
        return _outcomes(
            subscriptions.validate_many(
                db(), runtime(), current_user(), body["ids"], comment=body.get("comment")
            )
        )


@subscription_blp.route("/refusals")
class SubscriptionRefusals(MethodView):
    @subscription_blp.operation("refuse_subscription_requests")
    @subscription_blp.arguments(s.BulkRefusalSchema)
    @subscription_blp.response(200, s.written(s.BulkOutcomeSchema))
    @revisioned
    def post(self, body):
        """Refuse several requests with one reason; one outcome per request."""
        return _outcomes(
            subscriptions.refuse_many(
                db(), runtime(), current_user(), body["ids"], reason=body["reason"]
            )
        )
