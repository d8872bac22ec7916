"""The command line `authz`: an interface like HTTP, calling the authz workflows.

One module per command group; each builds its Runtime from the AUTHZ_* settings
(load_settings, build_runtime), as the service does. Domain errors are printed
as `error: <detail>` with exit code 1, never as a traceback (app.py). The
logic the commands run lives in authz/; here are arguments, wording and
output. `cli` may import api (the gunicorn application serves api.create_app,
the review report renders with api's template); nothing imports cli.
"""

from __future__ import annotations

from . import (
    clients,
    db,
    decisions,
    demo,
    mail,
    maintenance,
    platform,
    policy,
    review,
    serve,
    structures,
)
from .app import main

for command in (
    db.group,
    serve.serve,
    platform.operator_group,
    platform.reviewer_group,
    clients.group,
    structures.group,
    mail.group,
    maintenance.command,
    review.review,
    review.export_group,
    decisions.command,
    policy.group,
    demo.command,
):
    main.add_command(command)

__all__ = ["main"]
