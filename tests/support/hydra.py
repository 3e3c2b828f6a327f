"""Ory Hydra v2.3.0, a real OAuth2 server for the SMART Backend Services tests (docs/SPEC.md §12).

The binary is built by scripts/setup_fhir.sh into <cache>/bin/hydra; a test session that finds it missing runs that
script itself (about 2 minutes on 2 cores, once), so the tests never skip for want of it. Hydra runs in memory
(`DSN=memory`, `--dev`) on loopback; clients authenticate with `private_key_jwt` (RS384) and get opaque tokens that
the FHIR server checks by introspection.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parents[2]


def hydra_binary(cache_dir: Path) -> Path:
    binary = cache_dir.resolve() / "bin" / "hydra"
    if not os.access(binary, os.X_OK):
        env = dict(os.environ, TWIWATCH_CACHE_DIR=str(cache_dir.resolve()), PYTHON_VENV=sys.executable)
        subprocess.run(["bash", str(ROOT / "scripts" / "setup_fhir.sh"), "hydra"], check=True, env=env, cwd=ROOT,
                       timeout=1200)
    return binary


@dataclass
class Hydra:
    public_port: int
    admin_port: int
    public_scheme: str = "http"

    @property
    def issuer(self) -> str:
        return f"{self.public_scheme}://127.0.0.1:{self.public_port}"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/oauth2/token"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def register(self, client_id: str, jwk: dict, scope: str, alg: str = "RS384") -> dict:
        body = {"client_id": client_id, "client_name": f"{client_id} (tests)", "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": alg,
                "jwks": {"keys": [jwk]}, "scope": scope, "response_types": ["token"], "audience": []}
        req = urllib.request.Request(f"{self.admin}/admin/clients", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def introspect(self, token: str) -> dict:
        req = urllib.request.Request(f"{self.admin}/admin/oauth2/introspect",
                                     data=f"token={token}".encode(),
                                     headers={"Content-Type": "application/x-www-form-urlencoded"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def rsa_key(kid: str) -> tuple[bytes, dict]:
    """A fresh RSA key: (private PEM, public JWK for the client registration)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="RS384", use="sig")
    return pem, jwk


@contextlib.contextmanager
def running_hydra(cache_dir: Path, public_port: int, admin_port: int, log_path: Path,
                  tls: tuple[Path, Path] | None = None) -> Iterator[Hydra]:
    """Hydra serving on loopback until the block ends. tls: (certificate chain, key) for the public (token) port."""
    binary = hydra_binary(cache_dir)
    hydra = Hydra(public_port, admin_port, "https" if tls else "http")
    env = dict(os.environ, DSN="memory", URLS_SELF_ISSUER=hydra.issuer, SECRETS_SYSTEM=secrets.token_hex(16),
               SERVE_PUBLIC_PORT=str(public_port), SERVE_ADMIN_PORT=str(admin_port),
               SERVE_PUBLIC_HOST="127.0.0.1", SERVE_ADMIN_HOST="127.0.0.1", LOG_LEVEL="warn",
               STRATEGIES_ACCESS_TOKEN="opaque", TTL_ACCESS_TOKEN="10m")
    if tls:
        env.update(SERVE_PUBLIC_TLS_ENABLED="true", SERVE_PUBLIC_TLS_CERT_PATH=str(Path(tls[0]).resolve()),
                   SERVE_PUBLIC_TLS_KEY_PATH=str(Path(tls[1]).resolve()))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen([str(binary), "serve", "all", "--dev", "--sqa-opt-out"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"hydra exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{hydra.admin}/health/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("hydra did not become ready in 30 s")
            time.sleep(0.2)
        yield hydra
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
