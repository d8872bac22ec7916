"""Technical users: creation and secret reset by the principal manager, and the
token a technical user gets with its login and secret."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, request
from flask.views import MethodView

from authz.workflows import technical

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, public, runtime
from .paging import page_args
from .revisions import revisioned

blp = Blueprint(
    "technical",
    __name__,
    url_prefix="/v1",
    description="Technical users of a structure (principal manager only)",
)

NOT_VISIBLE = "Unknown, or not visible to the caller"
NOT_PRINCIPAL = "The caller is not the structure's principal manager, or it is inactive"


def _connection(
    user_id: int,
    login: str,
    label: str,
    secret: str,
    expires_at: dt.datetime,
    as_file: bool,
    status: int = 201,
) -> dict[str, Any] | Response:
    """The answer carrying a new secret: JSON, or the file as a download
    (`status`: 201 for a new technical user, 200 for a new secret)."""
    text = technical.connection_file(
        runtime(), login=login, secret=secret, expires_at=expires_at, label=label
    )
    if as_file:
        return Response(
            text,
            status=status,
            mimetype="text/plain",
            headers={"Content-Disposition": f'attachment; filename="technical-user-{user_id}.env"'},
        )
    return {
        "user_id": user_id,
        "login": login,
        "label": label,
        "secret": secret,
        "secret_expires_at": expires_at,
        "connection_file": text,
    }


@blp.route("/structures/<id:structure_id>/technical-users")
class TechnicalUsers(MethodView):
    @blp.operation("list_technical_users")
    @blp.arguments(s.PageArgs, location="query")
    @blp.response(200, s.page_of(s.TechnicalUserSchema))
    @blp.problem(403, NOT_PRINCIPAL)
    @blp.problem(404, NOT_VISIBLE)
    def get(self, args, structure_id):
        """The structure's technical users: label, login, status, secret expiry."""
        return technical.list_technical_users(
            db(), runtime(), current_user(), structure_id, **page_args(args)
        )

    @blp.operation("create_technical_user")
    @blp.arguments(s.FormatArgs, location="query")
    @blp.arguments(s.TechnicalUserCreateSchema)
    @blp.response(201, s.written(s.ConnectionSchema))
    @blp.problem(403, NOT_PRINCIPAL)
    @blp.problem(404, NOT_VISIBLE)
    @revisioned
    def post(self, query, body, structure_id):
        """Create a technical user for the structure: its login and secret are in
        this answer only (JSON, or ?format=file for the connection file)."""
        user, credential, login, secret = technical.create_technical_user(
            db(), runtime(), current_user(), structure_id, label=body["label"]
        )
        return _connection(
            user.id,
            login,
            credential.label,
            secret,
            credential.secret_expires_at,
            query["format"] == "file",
        )


@blp.route("/structures/<id:structure_id>/technical-users/<id:user_id>/secret")
class TechnicalSecret(MethodView):
    @blp.operation("reset_technical_user_secret")
    @blp.arguments(s.FormatArgs, location="query")
    @blp.arguments(s.SecretResetSchema)
    @blp.response(200, s.written(s.ConnectionSchema))
    @blp.problem(403, NOT_PRINCIPAL)
    @blp.problem(404, NOT_VISIBLE)
    @blp.problem(422, "confirm is not true")
    @revisioned
    def post(self, query, body, structure_id, user_id):
        """Reset the secret (with {"confirm": true}): the old one and every token
        obtained with it stop working at once; the principal is mailed. The new
        secret is in this answer only."""
        secret = technical.reset_secret(
            db(), runtime(), current_user(), structure_id, user_id, confirm=body["confirm"]
        )
        info = technical.get_technical_user(db(), runtime(), current_user(), structure_id, user_id)
        return _connection(
            info.user_id,
            info.login,
            info.label,
            secret,
            info.secret_expires_at,
            query["format"] == "file",
            status=200,
        )


@blp.route("/auth/technical-token")
class TechnicalToken(MethodView):
    @blp.operation("log_in_technical_user")
    @public
    @blp.arguments(s.TechnicalTokenRequestSchema)
    @blp.response(200, s.TokenSchema)
    @blp.problem(
        401, "Wrong login or secret (invalid_credentials), or expired secret (secret_expired)"
    )
    @blp.problem(429, "Too many failed attempts")
    def post(self, body):
        """A technical user exchanges its login and secret for a bearer token
        (never valid past the secret's expiry)."""
        token, row = technical.authenticate_technical(
            db(), runtime(), body["login"], body["secret"], request.remote_addr
        )
        return {"access_token": token, "token_type": "Bearer", "expires_at": row.expires_at}
