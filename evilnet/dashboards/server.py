"""The dashboards page over HTTP (Flask): read-only, GET only, loopback by default.

``/`` is the page for the choices in its query string (``city`` and ``topic``
repeated, ``from`` and ``to`` in ISO 8601, UTC); ``/vega-embed.js`` the charting
script it loads (built once by vl-convert, so the page needs no network).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, Response, request
from werkzeug.serving import make_server

from evilnet.dashboards import page as pages

SCRIPT_PATH = "vega-embed.js"


def moment(text: str | None) -> datetime | None:
    """An ISO 8601 moment of the query string (naive: UTC); empty: None."""
    if not text:
        return None
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def choice_of(args) -> pages.Choice:
    return pages.Choice(cities=tuple(args.getlist("city")), topics=tuple(args.getlist("topic")),
                        start=moment(args.get("from")), end=moment(args.get("to")))


def create_app(sources: pages.Sources) -> Flask:
    app = Flask("evilnet.dashboards")

    @app.get("/")
    def index() -> Response:
        try:
            choice = choice_of(request.args)
        except ValueError as error:
            return Response(f"bad time in the query string: {error}\n", 400,
                            mimetype="text/plain")
        return Response(pages.html(pages.build(sources, choice), script_url=SCRIPT_PATH),
                        mimetype="text/html")

    @app.get(f"/{SCRIPT_PATH}")
    def script() -> Response:
        response = Response(pages.vega_embed_script(), mimetype="text/javascript")
        response.cache_control.max_age = 86400
        return response

    return app


def serve(sources: pages.Sources, host: str, port: int, ready=None) -> None:
    """Serve until interrupted; ``ready(url)`` is called once it listens."""
    pages.vega_embed_script()  # built before the first page is asked for (seconds)
    server = make_server(host, port, create_app(sources), threaded=True)
    if ready:
        ready(f"http://{host}:{server.server_port}")
    try:
        server.serve_forever()
    finally:
        server.server_close()
