"""The FastAPI app: security headers on every response, request latency, the routers, templates and static files."""
from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from sqlalchemy.engine import Engine

from integrations.dashboard import store
from integrations.dashboard.web import view
from integrations.dashboard.web.config import WebConfig
from integrations.dashboard.web.security import LoginRequired, login_redirect

log = logging.getLogger("twiwatch.dashboard.web")
HERE = Path(__file__).resolve().parent
# No inline script or style anywhere: scripts and stylesheets come from /static only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

REQUEST_SECONDS = Histogram("twiwatch_dashboard_request_seconds", "dashboard HTTP request time by route",
                            ["route", "method", "status"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5))


def make_templates(cfg: WebConfig) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.globals.update(banner=view.RESEARCH_BANNER, verdicts=view.VERDICTS, state_labels=view.STATE_LABELS,
                       filter_classes=view.FILTER_CLASSES, secondary_labels=view.SECONDARY_LABELS)
    env.filters.update(local_time=lambda v: view.local_time(v, cfg.timezone), class_label=view.class_label,
                       class_family=view.class_family, num=view.fmt_num)
    return templates


def create_app(cfg: WebConfig, engine: Engine) -> FastAPI:
    from integrations.dashboard.web import routes_admin, routes_alert, routes_auth, routes_queue

    if not cfg.form_secret:
        cfg.form_secret = secrets.token_bytes(32)
    app = FastAPI(title="twiwatch dashboard (research use only)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.cfg = cfg
    app.state.engine = engine
    app.state.factory = store.session_factory(engine)
    app.state.templates = make_templates(cfg)

    @app.middleware("http")
    async def headers_and_latency(request: Request, call_next):
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - logged without its text (SQL parameters can hold an MRN)
            log.error("%s %s failed: %s", request.method, getattr(request.scope.get("route"), "path", "?"),
                      type(exc).__name__)
            response = PlainTextResponse("Internal error (logged). RESEARCH USE ONLY.", status_code=500)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith(("/alerts", "/api", "/admin", "/queue")) or request.url.path == "/":
            response.headers.setdefault("Cache-Control", "no-store")  # pages name patients (MRN)
        route = request.scope.get("route")
        # The route's template (/alerts/{report_id}), never the path itself: labels carry no identifiers.
        label = getattr(route, "path", "unmatched")
        REQUEST_SECONDS.labels(label, request.method, str(response.status_code)).observe(
            time.perf_counter() - started)
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired):
        return login_redirect(request)

    @app.exception_handler(store.BadCursor)
    async def bad_cursor(request: Request, exc: store.BadCursor):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not a queue cursor (take `next` from the previous page)"}, status_code=400)
        return RedirectResponse("/", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        reasons = []
        store_ok = False
        try:
            store_ok = bool(store.ping(engine))
        except Exception as exc:  # noqa: BLE001 - any failure to reach the store is "not healthy", with why
            reasons.append(f"store: {type(exc).__name__}")
        if not store_ok and not reasons:
            reasons.append("store: ping failed")
        consumer_ok, consumer_why = cfg.consumer_health()
        if not consumer_ok:
            reasons.append(f"consumer: {consumer_why}")
        body = {"app": cfg.app, "status": "ok" if not reasons else "unavailable", "store": "ok" if store_ok else "down",
                "consumer": consumer_why, "reasons": reasons, "research_only": True}
        return JSONResponse(body, status_code=200 if not reasons else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/static/favicon.svg", status_code=301)

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for router in (routes_auth.router, routes_queue.router, routes_alert.router, routes_admin.router):
        app.include_router(router)
    return app
