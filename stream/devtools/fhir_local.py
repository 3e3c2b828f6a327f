"""A real FHIR server for development, tests and the demo: HAPI FHIR JPA server 8.8.0 on H2 (docs/SPEC.md §12).

Like the local broker (kafka_local.py), it comes from Maven Central: `fhir_server_pom.xml` resolved with
`mvn dependency:copy-dependencies` (~300 MB of jars, cached), plus one application class of ours
(`FhirDevServer.java`, compiled by the same pom), run from the class path with `-XX:TieredStopAtLevel=1
-XX:+UseSerialGC` (25–90 s to start, ~0.8 GB). A developer tool only: the chart never deploys it.

The server speaks R4B (default) or R4, takes transactions, conditional creates and updates, `_history`, chained
search and rest-hook Subscriptions, and optionally enforces bearer tokens (a static token, or OAuth2 token
introspection, for SMART Backend Services) and serves HTTPS with a given certificate.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stream.devtools import local_process
from stream.devtools.local_process import is_listening

POM = Path(__file__).with_name("fhir_server_pom.xml")
APP = Path(__file__).with_name("FhirDevServer.java")
MAIN = "org.twiwatch.devfhir.FhirDevServer"
JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError")
FAST_START = ("-XX:TieredStopAtLevel=1",)  # C1 only: starts in about half the time, runs slower once warm


@dataclass(frozen=True)
class LocalFhir:
    cache_dir: Path
    hapi_version: str = "8.8.0"
    port: int = 8080
    fhir_version: str = "R4B"  # R4B | R4
    heap_opts: str = "-Xms256m -Xmx1g"
    database: str = "file"  # file (survives restarts) | memory
    name: str = ""  # the instance's folder under the cache; default node-<port>-<fhir version>
    tls_cert: Path | None = None  # PEM certificate chain: serve HTTPS
    tls_key: Path | None = None  # its PEM private key
    static_token: str = ""  # enforce this bearer token
    introspection_url: str = ""  # enforce tokens by RFC 7662 introspection
    token_endpoint: str = ""  # advertised in [base]/.well-known/smart-configuration
    http_port: int = 0  # with TLS: also plain HTTP on this port
    secure_only: bool = False  # enforce tokens on the HTTPS port only (the plain port stays open)
    fast_start: bool = True  # C1-only JIT (tests, e2e); False for throughput (benchmarks, a long demo)

    @property
    def root(self) -> Path:
        return self.cache_dir.resolve() / "fhir-server"  # absolute: Maven and the JVM run in other folders

    @property
    def build_dir(self) -> Path:
        return self.root / f"build-{self.hapi_version}"

    @property
    def home(self) -> Path:
        return self.root / (self.name or f"node-{self.port}-{self.fhir_version.lower()}")

    @property
    def pid_file(self) -> Path:
        return self.home / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://127.0.0.1:{self.port}/fhir"

    @property
    def plain_url(self) -> str:
        """The plain-HTTP base: the extra connector beside TLS, or the only one."""
        return f"http://127.0.0.1:{self.http_port}/fhir" if self.tls_cert and self.http_port else self.base_url


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in (POM, APP):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def resolve(f: LocalFhir) -> Path:
    """Resolve HAPI's jars into the cache and compile the application class (once per pom/source version)."""
    marker = f.build_dir / f".complete-{_source_hash()}"
    if marker.exists():
        return f.build_dir
    if not shutil.which("mvn"):
        raise RuntimeError("Maven (mvn) is needed to resolve HAPI FHIR from Maven Central")
    if not shutil.which("java"):
        raise RuntimeError("Java 17+ is needed to run the HAPI FHIR server")
    shutil.rmtree(f.build_dir, ignore_errors=True)
    (f.build_dir / "src").mkdir(parents=True)
    shutil.copy(POM, f.build_dir / "pom.xml")
    shutil.copy(APP, f.build_dir / "src" / APP.name)
    cmd = ["mvn", "-q", "-B", "-f", str(f.build_dir / "pom.xml"), "dependency:copy-dependencies", "compile",
           "-DincludeScope=runtime", f"-DoutputDirectory={f.build_dir / 'lib'}", f"-Dhapi.version={f.hapi_version}"]
    subprocess.run(cmd, check=True)
    marker.touch()
    return f.build_dir


def _jdbc_url(f: LocalFhir) -> str:
    if f.database == "memory":
        return f"jdbc:h2:mem:hapi-{f.port};DB_CLOSE_DELAY=-1"
    # WRITE_DELAY=0: H2 otherwise writes commits up to 0.5 s after acknowledging them, and a killed server would lose
    # writes it had confirmed (tests/stream/test_fhir_sink_kafka.py::test_server_restart_mid_stream found this).
    return f"jdbc:h2:file:{f.home / 'h2' / 'hapi'};WRITE_DELAY=0"


def java_cmd(f: LocalFhir) -> list[str]:
    build = f.build_dir
    args = [
        "java", *f.heap_opts.split(), *JVM_FLAGS, *(FAST_START if f.fast_start else ()),
        "-cp", f"{build / 'target' / 'classes'}:{build / 'lib'}/*", MAIN,
        f"--server.port={f.port}", "--server.address=127.0.0.1",
        # HAPI's Spring configuration has circular references; search URLs carry `|` (system|value).
        "--spring.main.allow-circular-references=true", "--server.tomcat.relaxed-query-chars=|",
        "--spring.main.banner-mode=off", f"--spring.datasource.url={_jdbc_url(f)}",
        "--spring.datasource.username=sa", "--spring.datasource.password=",
        f"--twiwatch.fhir-version={f.fhir_version}",
        "--logging.level.root=WARN", "--logging.level.org.twiwatch=INFO",
        "--logging.level.org.springframework.boot.web.embedded.tomcat=INFO",
    ]
    if f.tls_cert:
        args += ["--server.ssl.enabled=true", f"--server.ssl.certificate={Path(f.tls_cert).resolve()}",
                 f"--server.ssl.certificate-private-key={Path(f.tls_key).resolve()}"]
        if f.http_port:
            args.append(f"--twiwatch.http-port={f.http_port}")
    if f.secure_only:
        args.append("--twiwatch.auth.secure-only=true")
    if f.introspection_url:
        args.append(f"--twiwatch.auth.introspection-url={f.introspection_url}")
    if f.token_endpoint:
        args.append(f"--twiwatch.auth.token-endpoint={f.token_endpoint}")
    return args


def running_pid(f: LocalFhir) -> int | None:
    return local_process.running_pid(f.pid_file)


def answers(f: LocalFhir, timeout_s: float = 5.0) -> str | None:
    """The server's FHIR version when GET metadata answers, else None (readiness only: TLS is not verified here)."""
    ctx = ssl._create_unverified_context() if f.tls_cert else None  # noqa: S323 - a readiness probe on loopback
    try:
        with urllib.request.urlopen(f"{f.base_url}/metadata", timeout=timeout_s, context=ctx) as resp:
            return json.loads(resp.read()).get("fhirVersion")
    except (urllib.error.URLError, OSError, ValueError):
        return None


# HAPI FHIR 8.8 refuses the `:identifier` modifier on reference parameters (HAPI-2498; hapifhir/hapi-fhir#2916), so
# a report whose subject is a logical reference by MRN could not be found by `subject:identifier`. The development
# server installs this SearchParameter instead: DiagnosticReport?subject-identifier=<system>|<MRN> (docs/SPEC.md §3.7).
SUBJECT_IDENTIFIER_SP = {
    "resourceType": "SearchParameter",
    "url": "urn:twiwatch:SearchParameter/subject-identifier",
    "name": "subject-identifier",
    "status": "active",
    "description": "The identifier in a subject reference (a logical reference by MRN, or beside a literal one)",
    "code": "subject-identifier",
    "base": ["DiagnosticReport", "Observation"],
    "type": "token",
    "expression": "DiagnosticReport.subject.identifier | Observation.subject.identifier",
}


def install_search_parameters(f: LocalFhir) -> None:
    """Conditional create, so a restarted server (file database) keeps one copy."""
    headers = {"Content-Type": "application/fhir+json", "If-None-Exist": f"url={SUBJECT_IDENTIFIER_SP['url']}"}
    if f.static_token:
        headers["Authorization"] = f"Bearer {f.static_token}"
    ctx = ssl._create_unverified_context() if f.plain_url.startswith("https") else None  # noqa: S323 - loopback
    req = urllib.request.Request(f"{f.plain_url}/SearchParameter", data=json.dumps(SUBJECT_IDENTIFIER_SP).encode(),
                                 headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30, context=ctx):
        pass
    # The server takes a new SearchParameter into its registry within seconds; resources written before that are not
    # indexed by it, so wait until a search with it is accepted.
    probe = urllib.request.Request(f"{f.plain_url}/DiagnosticReport?subject-identifier=x&_count=1",
                                   headers={k: v for k, v in headers.items() if k == "Authorization"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(probe, timeout=10, context=ctx):
                return
        except urllib.error.HTTPError:
            time.sleep(1.0)
    raise RuntimeError("the FHIR server did not take the subject-identifier SearchParameter within 60 s")


def up(f: LocalFhir, timeout_s: float = 240.0, proc_out: list | None = None) -> str:
    """Start the server (resolving on first use) and wait until GET metadata answers; idempotent."""
    if running_pid(f) and answers(f):
        return f"FHIR server already running at {f.base_url} (pid {running_pid(f)})"
    if is_listening(f.port):
        raise RuntimeError(f"port {f.port} is taken by another process; set TWIWATCH_FHIR_SERVER_PORT")
    resolve(f)
    f.home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if f.static_token:
        env["TWIWATCH_AUTH_STATIC_TOKEN"] = f.static_token  # not on the command line, where `ps` would show it
    log = open(f.log_file, "ab")
    started = time.monotonic()
    proc = subprocess.Popen(java_cmd(f), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=f.home, env=env)
    f.pid_file.write_text(str(proc.pid))
    if proc_out is not None:
        proc_out.append(proc)
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        version = answers(f, 2.0)
        if version:
            install_search_parameters(f)
            return (f"HAPI FHIR {f.hapi_version} ({f.fhir_version}, FHIR {version}) up at {f.base_url} "
                    f"in {time.monotonic() - started:.0f} s (pid {proc.pid}, log {f.log_file})")
        time.sleep(1.0)
    tail = f.log_file.read_text(errors="replace")[-4000:]
    code = proc.poll()
    down(f)
    what = f"exited with code {code}" if code is not None else f"did not answer within {timeout_s:.0f} s"
    raise RuntimeError(f"the FHIR server {what}; log tail:\n{tail}")


def down(f: LocalFhir, timeout_s: float = 30.0) -> str:
    pid = running_pid(f)
    if pid is None:
        return "FHIR server is not running"
    local_process.stop(pid, f.pid_file, timeout_s)
    return f"FHIR server stopped (pid {pid})"


def kill(f: LocalFhir) -> None:
    """SIGKILL, for fault tests: no clean shutdown."""
    pid = running_pid(f)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            local_process.reap(pid)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    f.pid_file.unlink(missing_ok=True)


def status(f: LocalFhir) -> tuple[bool, str]:
    pid = running_pid(f)
    version = answers(f) if pid else None
    if pid and version:
        return True, f"FHIR server (HAPI {f.hapi_version}, FHIR {version}) running at {f.base_url} (pid {pid})"
    if pid:
        return False, f"FHIR server process {pid} exists but {f.base_url}/metadata does not answer (starting?)"
    return False, "FHIR server is not running"


def wipe(f: LocalFhir) -> None:
    """Delete the server's database. Only with the server down."""
    if running_pid(f):
        raise RuntimeError("stop the FHIR server first")
    shutil.rmtree(f.home / "h2", ignore_errors=True)


def from_settings(s, **overrides) -> LocalFhir:
    """The local server described by ToolSettings (stream.config), with overrides."""
    args = dict(cache_dir=s.cache_dir, hapi_version=s.fhir_server_hapi_version, port=s.fhir_server_port,
                fhir_version=s.fhir_server_fhir_version, heap_opts=s.fhir_server_heap_opts,
                database=s.fhir_server_database)
    args.update(overrides)
    return LocalFhir(**args)
