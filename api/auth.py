"""Log-in, log-out, sign-up, activation and one's own account."""

from __future__ import annotations

from flask import g, request
from flask.views import MethodView

from authz.workflows import accounts, users

from . import schemas as s
from .blueprint import Blueprint
from .identity import current_user, db, public, runtime
from .revisions import revisioned

blp = Blueprint("auth", __name__, url_prefix="/v1", description="Accounts and log-in")


@blp.route("/auth/token")
class Token(MethodView):
    @blp.operation("log_in")
    @public
    @blp.arguments(s.LoginSchema)
    @blp.response(200, s.TokenSchema)
    @blp.problem(401, "Wrong email or password")
    @blp.problem(429, "Too many failed log-ins")
    def post(self, body):
        """Log in with login email and password: a bearer token, shown once."""
        token, row = accounts.log_in(
            db(),
            runtime(),
            login_email=body["login_email"],
            password=body["password"],
            address=request.remote_addr,
        )
        return {"access_token": token, "token_type": "Bearer", "expires_at": row.expires_at}

    @blp.operation("log_out")
    @blp.response(204)
    def delete(self):
        """Log out: the presented token stops working at once."""
        accounts.log_out(db(), runtime(), g.token_id)


@blp.route("/accounts")
class Accounts(MethodView):
    @blp.operation("create_account")
    @blp.problem(404, "No such structure, or not visible (logged in)")
    @public
    @blp.doc(security=[{}, {"bearer": []}])  # anonymous sign-up, or a manager's token
    @blp.arguments(s.AccountCreateSchema)
    @blp.response(201, s.UserSchema)
    @blp.problem(401, "A token was sent and is not valid")
    @blp.problem(403, "Caller may not manage the structure's users")
    @blp.problem(409, "Login email already used")
    def post(self, body):
        """Create an account: it is pending until activated by the link mailed to
        the login email. Logged out: sign-up, no structure. Logged in: a manager
        creates the account of a person to attach and names the structure they
        act for (`structure_id`, written in its history), then attaches them."""
        if g.get("user_id") is None and "structure_id" not in body:
            return accounts.sign_up(db(), runtime(), **body)
        return users.create_account_for(db(), runtime(), current_user(), **body)


@blp.route("/accounts/activation")
class Activation(MethodView):
    @blp.operation("activate_account")
    @public
    @blp.arguments(s.ActivationSchema)
    @blp.response(200, s.written(s.UserSchema))
    @blp.problem(422, "Link invalid, expired or used; or weak password")
    @revisioned
    def post(self, body):
        """Activate an account with the mailed token and choose its password."""
        return accounts.activate(db(), runtime(), token=body["token"], password=body["password"])


@blp.route("/accounts/activation-email")
class ResendActivation(MethodView):
    @blp.operation("resend_activation_email")
    @public
    @blp.arguments(s.ResendActivationSchema)
    @blp.response(202)
    def post(self, body):
        """Send a new activation link to a pending account. Always answers 202,
        whether or not the email belongs to a pending account."""
        accounts.resend_activation(db(), runtime(), body["login_email"])


@blp.route("/accounts/password-reset-email")
class PasswordResetEmail(MethodView):
    @blp.operation("request_password_reset")
    @public
    @blp.arguments(s.PasswordResetEmailSchema)
    @blp.response(202)
    @blp.problem(429, "Too many links asked for this email or from this address")
    def post(self, body):
        """Forgot password: mail a single-use link (60 minutes) to an active
        account. Always answers 202, whether or not the email has an account."""
        accounts.request_password_reset(db(), runtime(), body["login_email"], request.remote_addr)


@blp.route("/accounts/password-reset")
class PasswordReset(MethodView):
    @blp.operation("reset_password")
    @public
    @blp.arguments(s.PasswordResetSchema)
    @blp.response(200, s.UserSchema)
    @blp.problem(422, "Link invalid, expired or used; or weak password")
    def post(self, body):
        """Choose a new password with the mailed token; every log-in token and
        console session of the account ends."""
        return accounts.reset_password(
            db(), runtime(), token=body["token"], password=body["password"]
        )


@blp.route("/me")
class Me(MethodView):
    @blp.operation("get_own_account")
    @blp.response(200, s.UserSchema)
    def get(self):
        """One's own account."""
        return current_user()

    @blp.operation("update_own_account")
    @blp.problem(403, "A technical user's profile is not its own to change (`not_a_person`)")
    @blp.arguments(s.ProfilePatchSchema)
    @blp.response(200, s.UserSchema)
    def patch(self, body):
        """Change one's contact email, names or phone (not the login email)."""
        return accounts.update_profile(db(), runtime(), current_user(), body)
