"""The HTTP floor of the benchmark (bench/run.py): a trivial Flask app served by
gunicorn with the settings `authz serve` uses, answering a check's route with a
constant after parsing its JSON body. What a check costs above it is the
service's own cost."""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.get("/health/ready")
def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/checks")
def check() -> dict[str, object]:
    body = request.get_json()
    return {"allowed": False, "revision": 0, "reason": "floor", "asked": len(body or {})}
