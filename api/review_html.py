"""The review report (authz/review/reports.py) as one self-contained HTML page,
from the Jinja2 template api/templates/review_report.html. Used by
GET /v1/reviews/report?format=html and `authz review --format html`; it needs no
Flask application, so the command line renders without one."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from authz.review.reports import KINDS, Report

_templates = Environment(
    loader=PackageLoader("api", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_html(report: Report) -> str:
    """A table per finding kind (every kind, with its count, severity and why),
    the changes of rights by structure when the report has them, and the
    history entries the findings link to. Every value is escaped."""
    return _templates.get_template("review_report.html").render(report=report, kinds=KINDS)
