"""Structures, their services and the spaces opened on them."""

from __future__ import annotations

from flask.views import MethodView

from authz.engine import permissions
from authz.workflows import attachments, candidates, structures
from models import Invitation

from . import schemas as s
from .blueprint import Blueprint
from .identity import caller, current_user, db, for_clients, runtime
from .invitations import invitation_created
from .paging import page_args
from .revisions import revisioned

blp = Blueprint(
    "structures",
    __name__,
    url_prefix="/v1/structures",
    description="Structures, services and opened spaces",
)

NOT_VISIBLE = "Unknown, or not visible to the caller"


@blp.route("")
class Structures(MethodView):
    @blp.operation("list_structures")
    @blp.arguments(s.StructureQuerySchema, location="query")
    @blp.response(200, s.page_of(s.StructureSchema))
    def get(self, args):
        """Search the structures the caller may see."""
        return structures.list_visible(db(), runtime(), current_user(), **page_args(args), **args)

    @blp.operation("create_structure")
    @blp.arguments(s.StructureCreateSchema)
    @blp.response(201, s.written(s.StructureSchema))
    @blp.problem(409, "Identifier already registered")
    @revisioned
    def post(self, body):
        """Create a private structure (any active person: they become its principal
        manager), or register a public one (platform operator only)."""
        if body.pop("kind") == "public":
            return structures.register_public_by_operator(db(), runtime(), current_user(), **body)
        settings = {
            k: body.pop(k)
            for k in ("invoice_requires_service", "legal_commitment_required", "default_spaces")
            if k in body
        }
        return structures.create_private(db(), runtime(), current_user(), settings=settings, **body)


@blp.route("/<id:structure_id>")
class StructureById(MethodView):
    @blp.operation("get_structure")
    @blp.response(200, s.StructureSchema)
    @blp.problem(404, NOT_VISIBLE)
    def get(self, structure_id):
        """One structure the caller may see."""
        return structures.get(db(), runtime(), current_user(), structure_id)

    @blp.operation("update_structure")
    @blp.arguments(s.StructurePatchSchema)
    @blp.response(200, s.written(s.StructureSchema))
    @blp.problem(403, "Caller does not manage it")
    @blp.problem(404, NOT_VISIBLE)
    @revisioned
    def patch(self, body, structure_id):
        """Change the designation or settings (managers of the structure)."""
        return structures.update(db(), runtime(), current_user(), structure_id, body)


@blp.route("/<id:structure_id>/services")
class Services(MethodView):
    @blp.operation("list_services")
    @blp.arguments(s.ServiceQuerySchema, location="query")
    @blp.response(200, s.page_of(s.ServiceSchema))
    @blp.problem(404, NOT_VISIBLE)
    def get(self, args, structure_id):
        """The structure's services."""
        return structures.list_services(
            db(),
            runtime(),
            current_user(),
            structure_id,
            active=args.pop("active", None),
            **page_args(args),
        )

    @blp.operation("create_service")
    @blp.problem(403, "The caller does not manage the structure's services")
    @blp.arguments(s.ServiceSchema)
    @blp.response(201, s.written(s.ServiceSchema))
    @blp.problem(409, "Code already used here")
    @revisioned
    def post(self, body, structure_id):
        """Create a service (code unique within the structure)."""
        return structures.create_service(db(), runtime(), current_user(), structure_id, **body)


@blp.route("/<id:structure_id>/services/<id:service_id>")
class ServiceById(MethodView):
    @blp.operation("update_service")
    @blp.problem(403, "The caller does not manage the structure's services")
    @blp.arguments(s.ServicePatchSchema)
    @blp.response(200, s.written(s.ServiceSchema))
    @blp.problem(404, NOT_VISIBLE)
    @revisioned
    def patch(self, body, structure_id, service_id):
        """Rename, activate or deactivate a service."""
        return structures.update_service(
            db(), runtime(), current_user(), structure_id, service_id, body
        )


@blp.route("/<id:structure_id>/spaces")
class OpenedSpaces(MethodView):
    @blp.operation("list_opened_spaces")
    @blp.response(200, s.OpenedSpacesSchema)
    @blp.problem(404, NOT_VISIBLE)
    def get(self, structure_id):
        """Spaces opened on the structure (service_id null) and on its services."""
        return {"spaces": structures.opened_spaces(db(), runtime(), current_user(), structure_id)}

    @blp.operation("replace_opened_spaces")
    @blp.problem(403, "The caller does not manage the structure's spaces")
    @blp.problem(409, "The structure is inactive")
    @blp.arguments(s.OpenedSpacesSchema)
    @blp.response(200, s.written(s.OpenedSpacesSchema))
    @blp.problem(422, "Unknown space or service, or public-only space on a private structure")
    @revisioned
    def put(self, body, structure_id):
        """Set exactly which spaces are opened, on the structure or its services."""
        return {
            "spaces": structures.replace_opened_spaces(
                db(), runtime(), current_user(), structure_id, body["spaces"]
            )
        }


@blp.route("/<id:structure_id>/access")
class Access(MethodView):
    @blp.operation("get_structure_access")
    @for_clients
    @blp.arguments(s.RevisionPageArgs, location="query")
    @blp.response(200, s.revision_page_of(s.MemberRightsSchema))
    @blp.problem(503, "at_least_revision not reached")
    @blp.problem(404, NOT_VISIBLE)
    def get(self, args, structure_id):
        """Who may do what here: every attached user with their role, management
        actions and actions per space and service (managers and client apps)."""
        return permissions.structure_access(
            runtime(),
            caller(),
            structure_id,
            at_least_revision=args.pop("at_least_revision", None),
            **page_args(args),
        )


@blp.route("/<id:structure_id>/attachments")
class Attachments(MethodView):
    @blp.operation("attach_user")
    @blp.problem(403, "The caller may not attach users here")
    @blp.arguments(s.DirectAttachmentSchema)
    @blp.response(201, s.AttachmentsWrittenSchema)
    @blp.problem(409, "Structure inactive, principal, or invitation pending")
    @blp.alt_response(
        202,
        schema=s.InvitationSchema,
        description="The person must consent: an invitation, which grants nothing yet",
        example=s.InvitationSchema.example,
        success=True,
    )
    @revisioned
    def post(self, body, structure_id):
        """Attach a user directly (by user_id or exact login email): role, start
        date, comment, whole structure or some services. An account this
        structure created and that is still pending is attached at once (201,
        with the revision of the write); anyone else is invited (202) and
        attached when they accept."""
        result = attachments.attach_directly(db(), runtime(), current_user(), structure_id, **body)
        if isinstance(result, Invitation):
            return invitation_created(result)
        return {"attachments": result}


@blp.route("/<id:structure_id>/candidates")
class Candidates(MethodView):
    @blp.operation("find_candidates")
    @blp.arguments(s.CandidateArgs, location="query")
    @blp.response(200, s.CandidatesSchema)
    @blp.problem(403, "The caller may not attach users here")
    @blp.problem(404, "No such structure, or not visible")
    @blp.problem(429, "Too many searches by this caller; retry later")
    def get(self, args, structure_id):
        """Find a person to attach, across the portal: by exact login email, or
        by last name and first name together. Only id, names and login email."""
        found = candidates.find(db(), runtime(), current_user(), structure_id, **args)
        return {"candidates": found}


@blp.route("/<id:structure_id>/attachments/<id:user_id>")
class AttachmentOfUser(MethodView):
    @blp.operation("detach_user")
    @blp.problem(403, "The caller may not remove attachments here")
    @blp.response(200, s.WrittenSchema)
    @blp.problem(409, "The principal cannot be removed")
    @revisioned
    def delete(self, structure_id, user_id):
        """Remove the user's attachment to the structure: their rights there end
        (answers the revision of the removal)."""
        attachments.remove(db(), runtime(), current_user(), structure_id, user_id)


@blp.route("/lookup")
class Lookup(MethodView):
    @blp.operation("lookup_structure")
    @blp.arguments(s.LookupQuerySchema, location="query")
    @blp.response(200, s.LookupSchema)
    @blp.problem(404, "No active structure has it")
    def get(self, args):
        """Find an active structure by its exact identifier, to ask for an
        attachment: its id, designation and active services."""
        return structures.lookup(db(), current_user(), **args)
