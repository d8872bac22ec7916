"""OpenID AuthZEN Authorization API 1.0: the HTTP binding of
authz/engine/authzen.py (docs/authzen.md).

- wire.py: the wire format — AuthZEN JSON read into plain values (entities,
  contexts, evaluations, pages), answers and page tokens written back, the
  HTTP paths and the discovery document;
- routes.py: the blueprint, its schemas and views.
"""

from .routes import blp

__all__ = ["blp"]
