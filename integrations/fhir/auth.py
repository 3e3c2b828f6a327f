"""Authorization for the FHIR sink: a static bearer token, or SMART Backend Services.

SMART Backend Services (HL7 SMART App Launch 2.x, "Backend Services"): OAuth2 client credentials where the client
authenticates with a `private_key_jwt` assertion (RFC 7523) signed RS384 or ES384, `iss` = `sub` = client id,
`aud` = the token endpoint, a unique `jti`, and `exp` no more than five minutes ahead. The token endpoint is found in
`[base]/.well-known/smart-configuration` unless configured. Tokens are cached until shortly before they expire; a
401 from the FHIR server drops the cached one (FhirClient retries once with a fresh token). A token endpoint that
refuses the client (4xx: invalid_client, invalid_scope, unauthorized_client) raises CredentialsRefused: the sink
pauses, it does not dead-letter reports; 5xx and network errors are transient like the FHIR server's.

Keys and tokens are never logged.
"""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import jwt

from integrations.fhir.client import CredentialsRefused, TransientError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 300  # SMART: exp no more than five minutes in the future


class StaticBearer:
    def __init__(self, token: str):
        if not token:
            raise ValueError("a static bearer token is empty")
        self._token = token

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        pass  # nothing to refresh: a static token refused twice is CredentialsRefused (FhirClient probes first)


class SmartBackendAuth:
    """Client-credentials tokens obtained with a signed JWT assertion; thread-safe."""

    def __init__(self, *, client_id: str, private_key_pem: bytes | str, key_id: str, fhir_base_url: str,
                 token_url: str = "", algorithm: str = "RS384", scope: str = "", verify: bool | str = True,
                 timeout_s: float = 10.0, assertion_lifetime_s: int = MAX_ASSERTION_LIFETIME_S, refresh_margin_s=30):
        if algorithm not in ("RS384", "ES384"):
            raise ValueError("SMART Backend Services signs assertions with RS384 or ES384")
        if not 0 < assertion_lifetime_s <= MAX_ASSERTION_LIFETIME_S:
            raise ValueError("the assertion may live at most 300 s (SMART Backend Services)")
        self.client_id = client_id
        self._key = private_key_pem
        self.key_id = key_id
        self.algorithm = algorithm
        self.scope = scope
        self.fhir_base_url = fhir_base_url.rstrip("/")
        self._token_url = token_url
        self._lifetime = assertion_lifetime_s
        self._margin = refresh_margin_s
        self._http = httpx.Client(timeout=timeout_s, verify=verify)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.tokens_fetched = 0

    @classmethod
    def from_key_file(cls, path: str | Path, **kwargs) -> SmartBackendAuth:
        return cls(private_key_pem=Path(path).read_bytes(), **kwargs)

    @property
    def token_url(self) -> str:
        if not self._token_url:
            self._token_url = self._discover()
        return self._token_url

    def _discover(self) -> str:
        url = f"{self.fhir_base_url}/.well-known/smart-configuration"
        try:
            resp = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise TransientError(f"SMART configuration: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise TransientError(f"SMART configuration: HTTP {resp.status_code}", status=resp.status_code)
        endpoint = resp.json().get("token_endpoint")
        if not endpoint:
            raise ValueError(f"{url} names no token_endpoint; set the token URL")
        return endpoint

    def assertion(self) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "jti": uuid.uuid4().hex,
                  "iat": now, "exp": now + self._lifetime}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.key_id, "typ": "JWT"})

    def _fetch(self) -> None:
        data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion()}
        if self.scope:
            data["scope"] = self.scope
        try:
            resp = self._http.post(self.token_url, data=data, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise TransientError(f"token endpoint: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            # 4xx from the token endpoint (invalid_client, invalid_scope) is a configuration fault, not the
            # report's: the sink pauses instead of dead-lettering reports. The OAuth error code is safe to show
            # (RFC 6749 §5.2 codes; the description could echo the assertion, so it is not shown).
            try:
                err = resp.json().get("error", "")
            except ValueError:
                err = ""
            error = CredentialsRefused if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429) \
                else TransientError
            raise error(f"token endpoint: HTTP {resp.status_code} {err}".strip(), status=resp.status_code)
        body = resp.json()
        self._token = body["access_token"]
        self._expires_at = time.monotonic() + float(body.get("expires_in", 300))
        self.tokens_fetched += 1

    def header(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or time.monotonic() > self._expires_at - self._margin:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
