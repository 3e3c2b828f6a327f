"""The queue (`/`), its rows as a fragment for live refresh, the live-update stream (SSE), and `GET /api/alerts`."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from integrations.dashboard import store
from integrations.dashboard.web import view
from integrations.dashboard.web.security import Viewer, background_viewer, current_viewer, session_check

router = APIRouter()
GROUPINGS = ("none", "patient", "episode")
KEEPALIVE_S = 15.0
SESSION_RECHECK_S = 30.0  # how soon an open live stream notices its session ended or idled out


@dataclass
class QueueQuery:
    unit: str | None
    bed: str | None
    cls: str | None
    state: str | None
    group: str
    cursor: str | None

    def alert_filter(self):
        return store.AlertFilter(unit=self.unit, bed=self.bed, cls=self.cls, state=self.state)

    def params(self) -> dict[str, str]:
        """The filters as query parameters (for links and the live refresh), without the cursor."""
        out = {k: v for k, v in (("unit", self.unit), ("bed", self.bed), ("cls", self.cls), ("state", self.state))
               if v}
        if self.group != "none":
            out["group"] = self.group
        return out


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value[:100] or None


def queue_query(unit: str | None = None, bed: str | None = None, cls: str | None = Query(None, alias="class"),
                state: str | None = None, group: str = "none", cursor: str | None = None) -> QueueQuery:
    cls = _blank(cls)
    state = _blank(state)
    return QueueQuery(_blank(unit), _blank(bed), cls if cls in view.FILTER_CLASSES else None,
                      state if state in view.STATE_LABELS else None, group if group in GROUPINGS else "none",
                      _blank(cursor))


def group_rows(rows: list, how: str) -> list[tuple[str, list]]:
    """Rows of one page under their patient (MRN) or episode, groups in queue order (first row decides)."""
    if how == "none":
        return [("", rows)]
    groups: dict[str, list] = {}
    for row in rows:
        if how == "patient":
            key = f"MRN {row.mrn}" if row.mrn else "No MRN"
        else:
            key = f"Episode {row.group_key.split(':', 1)[-1][:16]}" if row.kind == "episode" else "ECGs (not episodes)"
        groups.setdefault(key, []).append(row)
    return list(groups.items())


FILTER_VALUES_TTL_S = 10.0


def _filter_values(app, s) -> dict[str, list[str]]:
    """The drop-downs' values, kept for a few seconds: they change rarely and cost a scan of the alerts (tens of ms
    at 10,000 on SQLite), while the rows themselves are a short index range."""
    cached = getattr(app.state, "filter_values", None)
    now = time.monotonic()
    if cached is None or now - cached[0] > FILTER_VALUES_TTL_S:
        cached = (now, store.filter_values(s))
        app.state.filter_values = cached
    return cached[1]


def _page(request: Request, q: QueueQuery):
    cfg = request.app.state.cfg
    with request.app.state.factory() as s:
        rows, next_cursor = store.list_alerts(s, q.alert_filter(), q.cursor, cfg.page_size)
        values = _filter_values(request.app, s)
        seq = store.latest_seq(s)
    return rows, next_cursor, values, seq


@router.get("/", response_class=HTMLResponse)
def queue(request: Request, q: QueueQuery = Depends(queue_query), viewer: Viewer = Depends(current_viewer)):
    rows, next_cursor, values, seq = _page(request, q)
    return request.app.state.templates.TemplateResponse(request, "queue.html", {
        "viewer": viewer, "q": q, "groups": group_rows(rows, q.group), "next_cursor": next_cursor, "values": values,
        "seq": seq, "params": q.params(), "groupings": GROUPINGS, "count": len(rows)})


@router.get("/queue/rows", response_class=HTMLResponse)
def queue_rows(request: Request, q: QueueQuery = Depends(queue_query),
               viewer: Viewer = Depends(background_viewer)):
    """The first page's rows (tbody elements), for the live refresh."""
    cfg = request.app.state.cfg
    with request.app.state.factory() as s:
        rows, _next = store.list_alerts(s, q.alert_filter(), None, cfg.page_size)
        seq = store.latest_seq(s)
    response = request.app.state.templates.TemplateResponse(request, "_rows.html", {
        "groups": group_rows(rows, q.group), "q": q})
    response.headers["X-Queue-Seq"] = str(seq)
    return response


@router.get("/events")
async def events(request: Request, since: int = -1,
                 viewer: Viewer = Depends(background_viewer)) -> StreamingResponse:
    """Server-sent events: one `change` event (the changed alerts' ids, states and the new sequence number) whenever
    the store has changes after `since`; polled every ~250 ms so a new report shows within a second. The stream
    ends after the idle timeout; the browser reconnects, and that checks the session again. The session is also
    re-checked (without touching it) every SESSION_RECHECK_S: once it has ended or idled out, an `ended` event sends
    the page to the login. `since` is the sequence number the page was rendered at (the queue page carries it);
    without it, changes from now on."""
    app = request.app
    cfg = app.state.cfg
    lifetime = cfg.idle_timeout_s

    def poll(seq: int):
        with app.state.factory() as s:
            return store.changes_since(s, seq)

    async def stream() -> AsyncIterator[str]:
        seq = since
        if seq < 0:
            seq = await run_in_threadpool(lambda: _latest(app))
        started = last_sent = checked = time.monotonic()
        yield f"retry: 1000\nevent: hello\ndata: {json.dumps({'seq': seq})}\n\n"
        while time.monotonic() - started < lifetime:
            if await request.is_disconnected():
                return
            if time.monotonic() - checked > SESSION_RECHECK_S:
                checked = time.monotonic()
                if await run_in_threadpool(session_check, app, viewer.token, touch=False) is None:
                    yield "event: ended\ndata: {}\n\n"
                    return
            new_seq, rows = await run_in_threadpool(poll, seq)
            seq = max(new_seq, seq)  # past changes of reports that are not alerts too
            if rows:
                data = {"seq": seq, "changes": [{"id": r.id, "state": r.state, "version": r.version} for r in rows]}
                yield f"event: change\nid: {seq}\ndata: {json.dumps(data)}\n\n"
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(cfg.poll_interval_s)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _latest(app) -> int:
    with app.state.factory() as s:
        return store.latest_seq(s)


def api_item(row) -> dict:
    return {"id": row.id, "mrn": row.mrn, "bed": row.bed, "unit": row.unit, "class": row.cls, "kind": row.kind,
            "novelty": row.novelty, "time": row.time.isoformat() if row.time else None, "state": row.state,
            "version": row.version, "changed_since_adjudication": row.changed_since_adjudication}


@router.get("/api/alerts")
def api_alerts(request: Request, q: QueueQuery = Depends(queue_query), limit: int = Query(50, ge=1, le=500),
               viewer: Viewer = Depends(current_viewer)) -> JSONResponse:
    with request.app.state.factory() as s:
        rows, next_cursor = store.list_alerts(s, q.alert_filter(), q.cursor, limit)
    return JSONResponse({"research_only": True, "notice": view.RESEARCH_BANNER,
                         "items": [api_item(r) for r in rows], "next": next_cursor},
                        headers={"Cache-Control": "no-store"})
