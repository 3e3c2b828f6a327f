"""A small FHIR REST client for delivering reports (httpx): reads, searches, transactions, the CapabilityStatement.

Every failure is classified for the caller (docs/SPEC.md §3.7, §10.3):
- `TransientError`: the server or the network is unwell (connection errors, timeouts, 5xx, 408, 429 with its
  Retry-After). Retry later; never dead-letter.
- `CredentialsRefused` (a TransientError): the sink's credentials are refused, not the report. A 401 drops the cached
  token and the request is sent once more with a fresh one; a second 401 is checked with a probe (a read of a
  resource that does not exist): if the probe is refused too, the server refuses our credentials whatever we send
  (revoked client, expired static token, clock skew, the server's introspection down), and dead-lettering would
  empty the stream into the dead-letter topic: the sink pauses, counts it and says so on /healthz. The token
  endpoint refusing the client (400/401 invalid_client, invalid_scope) is the same.
- `VersionConflict`: 409 or 412 (a stale If-Match; HAPI answers 409 where the specification says 412, §3.7).
  Re-read and retry.
- `PermanentError`: any other 4xx: the server refuses this request. It carries the server's OperationOutcome. A 401
  whose probe is answered (the fresh token is accepted elsewhere) is one: the refusal belongs to this request.

No patient data is logged here; callers log only statuses and issue codes.
"""
from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    def __init__(self, message: str, *, status: int | None = None, outcome: dict | None = None):
        super().__init__(message)
        self.status = status
        self.outcome = outcome

    def issue_codes(self) -> list[str]:
        return [str(i.get("code")) for i in (self.outcome or {}).get("issue") or []]


class TransientError(FhirError):
    def __init__(self, message: str, *, status: int | None = None, outcome: dict | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message, status=status, outcome=outcome)
        self.retry_after_s = retry_after_s


class VersionConflict(FhirError):
    pass


class PermanentError(FhirError):
    pass


class CredentialsRefused(TransientError):
    """The FHIR server or the token endpoint refuses the sink's credentials: no report's fault, so pause."""


# Read by the credentials probe: an id no server holds (a 404 or 410 proves the token authenticates).
PROBE_PATH = "Device/twiwatch-credentials-probe"


class Auth(Protocol):
    """Supplies the Authorization header; `invalidate` drops a cached token after a 401."""

    def header(self) -> dict[str, str]: ...

    def invalidate(self) -> None: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _outcome(resp: httpx.Response) -> dict | None:
    try:
        body = resp.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None


@dataclass
class Capabilities:
    fhir_version: str
    software: str
    transaction: bool
    conditional_update: dict[str, bool] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)


class FhirClient:
    """Synchronous, thread-safe (one httpx.Client with a connection pool) FHIR client for one base URL."""

    def __init__(self, base_url: str, *, auth: Auth | None = None, timeout_s: float = 15.0,
                 verify: bool | str = True, max_connections: int = 16, user_agent: str = "twiwatch-fhir-sink"):
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=self.base_url + "/", timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            verify=verify, limits=httpx.Limits(max_connections=max_connections,
                                               max_keepalive_connections=max_connections),
            headers={"Accept": FHIR_JSON, "User-Agent": user_agent},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ---

    def request(self, method: str, path: str, *, params: Any = None, body: dict | None = None,
                headers: dict[str, str] | None = None, authenticate: bool = True,
                timeout_scale: float = 1.0) -> httpx.Response:
        """One request; raises the classified errors above. 2xx and 304 are returned. `timeout_scale` lengthens the
        read timeout of a request that carries several requests' work (a transaction of several reports)."""
        hdrs = dict(headers or {})
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_scale == 1.0 else \
            httpx.Timeout(self.timeout_s * timeout_scale, connect=min(self.timeout_s, 5.0))
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            hdrs["Content-Type"] = FHIR_JSON
        for attempt in (1, 2):
            if authenticate and self.auth is not None:
                hdrs.update(self.auth.header())
            try:
                resp = self._http.request(method, path, params=params, content=content, headers=hdrs,
                                          timeout=timeout)
            except httpx.TimeoutException as exc:
                raise TransientError(f"{method} {path}: timeout ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                raise TransientError(f"{method} {path}: {type(exc).__name__}") from exc
            if resp.status_code == 401 and attempt == 1 and authenticate and self.auth is not None:
                self.auth.invalidate()  # an expired or revoked token: fetch a new one once
                continue
            break
        if resp.status_code == 401 and authenticate:
            self._refused(method, path, resp)
        return self._check(method, path, resp)

    def _refused(self, method: str, path: str, resp: httpx.Response) -> None:
        """A 401 with a fresh token: our credentials, or this request? Raises CredentialsRefused or PermanentError."""
        what, outcome = f"{method} {path or '/'}: HTTP 401", _outcome(resp)
        if self.auth is None:
            raise CredentialsRefused(what + " (the server wants credentials; none are configured)", status=401,
                                     outcome=outcome)
        try:
            probe = self._http.request("GET", PROBE_PATH, headers=self.auth.header())
        except httpx.TransportError as exc:
            raise TransientError(f"{what} (credentials probe: {type(exc).__name__})", status=401) from exc
        if probe.status_code == 401:
            raise CredentialsRefused(what + " (credentials refused, also with a fresh token)", status=401,
                                     outcome=outcome)
        if probe.status_code >= 500 or probe.status_code in (408, 429):
            raise TransientError(what + f" (credentials probe: HTTP {probe.status_code})", status=401, outcome=outcome)
        raise PermanentError(what + " (refused for this request; the same credentials are accepted)", status=401,
                             outcome=outcome)

    @staticmethod
    def _check(method: str, path: str, resp: httpx.Response) -> httpx.Response:
        status = resp.status_code
        if status < 300 or status == 304:
            return resp
        outcome = _outcome(resp)
        what = f"{method} {path or '/'}: HTTP {status}"
        if status in (429, 503) or status >= 500 or status == 408:
            raise TransientError(what, status=status, outcome=outcome,
                                 retry_after_s=parse_retry_after(resp.headers.get("Retry-After")))
        if status == 401:  # unauthenticated requests (metadata) that the server wants credentials for
            raise CredentialsRefused(what + " (credentials required)", status=status, outcome=outcome)
        if status in (409, 412):
            raise VersionConflict(what, status=status, outcome=outcome)
        raise PermanentError(what, status=status, outcome=outcome)

    # --- FHIR interactions ---

    def capabilities(self) -> Capabilities:
        cs = self.request("GET", "metadata", authenticate=False).json()
        rest = (cs.get("rest") or [{}])[0]
        transaction = any(i.get("code") == "transaction" for i in rest.get("interaction") or [])
        cond = {r.get("type"): bool(r.get("conditionalUpdate")) for r in rest.get("resource") or []}
        software = cs.get("software") or {}
        return Capabilities(fhir_version=str(cs.get("fhirVersion", "")),
                            software=f"{software.get('name', '?')} {software.get('version', '')}".strip(),
                            transaction=transaction, conditional_update=cond, raw=cs)

    def search(self, resource_type: str, params: dict[str, Any] | list[tuple[str, str]]) -> dict:
        return self.request("GET", resource_type, params=params).json()

    def search_all(self, resource_type: str, params: dict[str, Any] | list[tuple[str, str]],
                   limit_pages: int = 1000) -> list[dict]:
        """Every resource of a search, following `next` links (for tools and tests; the sink reads single pages)."""
        out: list[dict] = []
        bundle = self.search(resource_type, params)
        for _ in range(limit_pages):
            out.extend(e["resource"] for e in bundle.get("entry") or [] if "resource" in e)
            nxt = next((link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
            if not nxt:
                break
            bundle = self.request("GET", nxt).json()
        return out

    def read(self, resource_type: str, rid: str) -> dict:
        return self.request("GET", f"{resource_type}/{rid}").json()

    def transaction(self, bundle: dict, timeout_scale: float = 1.0) -> dict:
        return self.request("POST", "", body=bundle, timeout_scale=timeout_scale).json()

    def create(self, resource: dict, if_none_exist: str | None = None) -> httpx.Response:
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else None
        return self.request("POST", resource["resourceType"], body=resource, headers=headers)
