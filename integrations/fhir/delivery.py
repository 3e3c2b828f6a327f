"""Write one report version to a FHIR server: idempotent, in version order, never overwriting a newer version.

The design of report.py's transaction bundle, made safe against redelivery, concurrency and reordering
(docs/SPEC.md §3.7, §10.3):

- Our version travels in the resources as an extension (`VERSION_EXTENSION`, a positiveInt) on the DiagnosticReport,
  its Observations and the Provenance. `meta.versionId` belongs to the server (§3.7 caveat) and is stripped; a
  `meta.tag` would not do either, because servers such as HAPI merge tags across versions.
- Before writing, the server's copy is read (`DiagnosticReport?identifier=…&_include=DiagnosticReport:result`). If it
  carries our version or a newer one, nothing is written ("already-current" / "superseded").
- First version on the server: one transaction of conditional creates (`ifNoneExist` on the identifier) for the
  report and its Observations and `PUT Provenance/<deterministic id>`. Our version 1 goes straight to it, without the
  read (the common case, one request instead of two); if the report is already there (a redelivery, or another
  writer), the conditional create matches instead of creating, and the write is re-read and retried.
- A later version: one transaction with `PUT DiagnosticReport/<server id>` under `If-Match` (the server's version
  just read), the Observations updated by id (or conditionally on their identifier when new), Observations the new
  version dropped marked `entered-in-error`, and the new Provenance. A stale If-Match (409 or 412) rolls the whole
  transaction back; it is re-read and retried.
- Devices are shared by every report of one software version: each is created once (conditional create, under a
  lock) and then referenced literally, so concurrent transactions never race to create the same Device.
- Subject: a logical reference by identifier that matches exactly one Patient on the server becomes a literal
  reference (keeping the identifier); no match keeps the logical reference (or creates the Patient when configured);
  several matches refuse the report (`AmbiguousSubject`, a permanent refusal).

Statuses are never changed except to mark dropped Observations: the sink never sends `final`.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from integrations.fhir.client import FhirClient, PermanentError, TransientError, VersionConflict

log = logging.getLogger("twiwatch.fhir.delivery")

VERSION_EXTENSION = "urn:twiwatch:extension:report-version"
WRITTEN_TYPES = ("DiagnosticReport", "Observation", "Provenance", "Device")
MAX_ATTEMPTS = 5

Outcome = Literal["written", "already-current", "superseded"]


class InvalidReport(ValueError):
    """The message is not a report version this sink can deliver (dead letter, never retried)."""


class AmbiguousSubject(PermanentError):
    """Several Patients on the server carry the report's patient identifier."""


class DuplicateOnServer(PermanentError):
    """Several resources on the server already carry one identifier of this report."""


@dataclass(frozen=True)
class Delivered:
    outcome: Outcome
    identifier: str  # the report identifier value (a hash of the source, never a patient id)
    version: int
    server_id: str | None = None  # DiagnosticReport/<id>
    server_version: str | None = None
    last_updated: str | None = None
    attempts: int = 1
    entered_in_error: int = 0
    subject: str = "none"  # literal | logical | created | fhir-id | none: how the subject was written


@dataclass
class ReportVersion:
    """The parts of one collection bundle from the reports topic, ready to be written."""

    identifier: dict[str, str]
    version: int
    status: str
    report: tuple[str, dict]  # (fullUrl, resource)
    observations: list[tuple[str, dict]]
    devices: list[tuple[str, dict]]
    provenances: list[tuple[str, dict]]

    @property
    def token(self) -> str:
        return token(self.identifier)


def token(identifier: dict[str, str]) -> str:
    system, value = identifier.get("system"), identifier["value"]
    return f"{system}|{value}" if system else value


def _url_token(identifier: dict[str, str]) -> str:
    system, value = identifier.get("system"), identifier["value"]
    v = quote(value, safe=":/")
    return f"{quote(system, safe=':/')}|{v}" if system else v


def version_of(resource: dict | None) -> int:
    """Our version on a resource (0 when absent)."""
    for ext in (resource or {}).get("extension") or []:
        if ext.get("url") == VERSION_EXTENSION:
            try:
                return int(ext.get("valuePositiveInt") or ext.get("valueInteger") or 0)
            except (TypeError, ValueError):
                return 0
    return 0


def parse_report(bundle: Any) -> ReportVersion:
    """Split a report bundle (docs/SPEC.md §3.3: collection of DiagnosticReport, Observations, Devices,
    Provenance). Raises InvalidReport on anything else."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidReport("not a FHIR Bundle")
    groups: dict[str, list[tuple[str, dict]]] = {t: [] for t in WRITTEN_TYPES}
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise InvalidReport("a bundle entry has no resource")
        rtype = resource.get("resourceType")
        if rtype not in groups:
            raise InvalidReport(f"unexpected resource type {rtype!r} in a report bundle")
        url = entry.get("fullUrl")
        if not isinstance(url, str) or not url:
            raise InvalidReport("a bundle entry has no fullUrl")
        groups[rtype].append((url, resource))
    if len(groups["DiagnosticReport"]) != 1:
        n = len(groups["DiagnosticReport"])
        raise InvalidReport(f"a report bundle holds exactly one DiagnosticReport, not {n}")
    url, report = groups["DiagnosticReport"][0]
    idents = report.get("identifier") or []
    if not idents or not isinstance(idents[0], dict) or not idents[0].get("value"):
        raise InvalidReport("the DiagnosticReport has no identifier")
    try:
        version = int((report.get("meta") or {}).get("versionId"))
    except (TypeError, ValueError):
        raise InvalidReport("the DiagnosticReport has no numeric meta.versionId (our version)") from None
    if version < 1:
        raise InvalidReport("meta.versionId must be >= 1")
    status = report.get("status")
    if status not in ("partial", "preliminary"):
        # docs/SPEC.md §3.3: twiwatch never emits final or amended; the sink does not pass them on either.
        raise InvalidReport(f"report status {status!r} is not one twiwatch emits")
    for _, obs in groups["Observation"]:
        if not (obs.get("identifier") or [{}])[0].get("value"):
            raise InvalidReport("an Observation of the report has no identifier")
    for _, dev in groups["Device"]:
        if not (dev.get("identifier") or [{}])[0].get("value"):
            raise InvalidReport("a Device of the report has no identifier")
    return ReportVersion(identifier=dict(idents[0]), version=version, status=status, report=(url, report),
                         observations=groups["Observation"], devices=groups["Device"],
                         provenances=groups["Provenance"])


def _stamp(resource: dict, version: int) -> dict:
    """A copy to send: no server-owned meta, our version as an extension."""
    out = copy.deepcopy(resource)
    meta = out.get("meta") or {}
    for key in ("versionId", "lastUpdated", "source"):
        meta.pop(key, None)
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    exts = [e for e in out.get("extension") or [] if e.get("url") != VERSION_EXTENSION]
    exts.append({"url": VERSION_EXTENSION, "valuePositiveInt": version})
    out["extension"] = exts
    return out


def _walk_refs(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from _walk_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_refs(value)


def _replace_refs(resource: dict, mapping: dict[str, str]) -> None:
    for ref in _walk_refs(resource):
        if ref["reference"] in mapping:
            ref["reference"] = mapping[ref["reference"]]


def _entry_status(entry: dict) -> int:
    try:
        return int(str((entry.get("response") or {}).get("status", "0")).split()[0])
    except ValueError:
        return 0


def _location_id(location: str | None, rtype: str) -> str | None:
    """`Device/12/_history/1` or an absolute URL → `12`."""
    if not location:
        return None
    parts = location.split("/")
    if rtype in parts:
        i = len(parts) - 1 - parts[::-1].index(rtype)
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


@dataclass
class _Prepared:
    """One report version, ready to send."""

    rv: ReportVersion
    report_url: str
    dr: dict
    observations: list[tuple[str, dict]]
    provenances: list[tuple[str, dict]]
    how: str  # how the subject was written


class _KeyedLocks:
    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class ReportWriter:
    """Writes report versions through one FhirClient; safe to use from several threads for different reports (the
    caller keeps each report's versions in order on one thread)."""

    def __init__(self, client: FhirClient, *, create_patients: bool = False, patient_cache_ttl_s: float = 300.0,
                 unknown_patient_ttl_s: float = 30.0):
        self.client = client
        self.create_patients = create_patients
        self.patient_cache_ttl_s = patient_cache_ttl_s
        # An MRN no Patient carries is asked again after this long: a Patient registered meanwhile is then used.
        self.unknown_patient_ttl_s = unknown_patient_ttl_s
        self._devices: dict[str, str] = {}
        self._patients: dict[str, tuple[str | None, float]] = {}
        self._locks = _KeyedLocks()

    # --- shared resources: Devices and Patients, created once ---

    def _ensure(self, kind: str, resource: dict, identifier: dict) -> str:
        key = f"{kind}:{token(identifier)}"
        cache = self._devices if kind == "Device" else None
        if cache is not None and key in cache:
            return cache[key]
        with self._locks(key):
            if cache is not None and key in cache:
                return cache[key]
            found = self.client.search(kind, {"identifier": token(identifier), "_count": "2", "_elements": "id"})
            ids = [e["resource"]["id"] for e in found.get("entry") or [] if e.get("resource", {}).get("id")]
            if ids:
                if len(ids) > 1:
                    log.warning("%d %s resources share one identifier on the server; using the first", len(ids),
                                kind)
                ref = f"{kind}/{ids[0]}"
            else:
                body = copy.deepcopy(resource)
                body.pop("id", None)
                (body.get("meta") or {}).pop("versionId", None)
                resp = self.client.create(body, if_none_exist=f"identifier={_url_token(identifier)}")
                rid = _location_id(resp.headers.get("Location") or resp.headers.get("Content-Location"), kind)
                if rid is None:
                    rid = (resp.json() if resp.content else {}).get("id")
                if not rid:
                    raise TransientError(f"{kind} create returned no location")
                ref = f"{kind}/{rid}"
            if cache is not None:
                cache[key] = ref
            return ref

    def _subject(self, subject: dict | None) -> tuple[dict | None, str]:
        """The subject to write and how it was resolved (docs/SPEC.md §10.4: never logged)."""
        if not subject:
            return None, "none"
        if "reference" in subject or not isinstance(subject.get("identifier"), dict):
            return subject, "fhir-id"
        ident = subject["identifier"]
        if not ident.get("value"):
            return subject, "logical"
        key = token(ident)
        hit = self._patients.get(key)
        if hit and hit[1] > time.monotonic():
            if hit[0] is None:
                return subject, "logical"
            return {"reference": hit[0], "type": "Patient", "identifier": ident}, "literal"
        found = self.client.search("Patient", {"identifier": key, "_count": "2", "_elements": "id"})
        ids = [e["resource"]["id"] for e in found.get("entry") or [] if e.get("resource", {}).get("id")]
        if len(ids) > 1 or int(found.get("total") or 0) > 1:
            raise AmbiguousSubject("several Patients on the server carry the report's patient identifier; "
                                   "the report cannot name one of them", status=None)
        how = "literal"
        if not ids:
            if not self.create_patients:
                self._patients[key] = (None, time.monotonic() + self.unknown_patient_ttl_s)
                return subject, "logical"
            ref = self._ensure("Patient", {"resourceType": "Patient", "identifier": [ident]}, ident)
            how = "created"
        else:
            ref = f"Patient/{ids[0]}"
        self._patients[key] = (ref, time.monotonic() + self.patient_cache_ttl_s)
        return {"reference": ref, "type": "Patient", "identifier": ident}, how

    # --- the report ---

    def _current(self, rv: ReportVersion) -> tuple[dict | None, dict[str, dict]]:
        """The server's DiagnosticReport for this identifier (or None) and its result Observations by identifier."""
        found = self.client.search("DiagnosticReport", {"identifier": rv.token,
                                                        "_include": "DiagnosticReport:result"})
        matches, included = [], {}
        for entry in found.get("entry") or []:
            res = entry.get("resource") or {}
            mode = (entry.get("search") or {}).get("mode", "match")
            if res.get("resourceType") == "DiagnosticReport" and mode == "match":
                matches.append(res)
            elif res.get("resourceType") == "Observation":
                ident = (res.get("identifier") or [{}])[0]
                if ident.get("value"):
                    included[token(ident)] = res
        if len(matches) > 1:
            raise DuplicateOnServer(f"{len(matches)} DiagnosticReports on the server share the report identifier")
        return (matches[0] if matches else None), included

    def _prepare(self, bundle: dict) -> _Prepared:
        """Parse a report version and make what is sent: our version stamped, Devices and the subject resolved."""
        rv = parse_report(bundle)
        device_refs = {url: self._ensure("Device", dev, dev["identifier"][0]) for url, dev in rv.devices}
        report_url, report = rv.report
        original_subject = report.get("subject")
        subject, how = self._subject(original_subject)

        def prepare(resource: dict) -> dict:
            out = _stamp(resource, rv.version)
            if original_subject is not None and out.get("subject") == original_subject:
                out["subject"] = copy.deepcopy(subject)
            _replace_refs(out, device_refs)
            return out

        return _Prepared(rv, report_url, prepare(report), [(url, prepare(obs)) for url, obs in rv.observations],
                         [(url, prepare(p)) for url, p in rv.provenances], how)

    @staticmethod
    def _already(p: _Prepared, current: dict | None, attempt: int) -> Delivered | None:
        """The server's copy carries this version or a newer one: nothing to write."""
        if current is None:
            return None
        have = version_of(current)
        if have < p.rv.version:
            return None
        meta = current.get("meta") or {}
        return Delivered("already-current" if have == p.rv.version else "superseded", p.rv.identifier["value"],
                         p.rv.version, f"DiagnosticReport/{current['id']}", meta.get("versionId"),
                         meta.get("lastUpdated"), attempt, subject=p.how)

    @staticmethod
    def _written(p: _Prepared, first: dict, attempt: int, retired: int) -> Delivered:
        resp = first.get("response") or {}
        rid = _location_id(resp.get("location"), "DiagnosticReport")
        return Delivered("written", p.rv.identifier["value"], p.rv.version, f"DiagnosticReport/{rid}" if rid else None,
                         resp.get("etag"), resp.get("lastModified"), attempt, retired, subject=p.how)

    def deliver(self, bundle: dict) -> Delivered:
        return self._deliver(self._prepare(bundle))

    def _deliver(self, p: _Prepared, read_first: bool = False) -> Delivered:
        rv = p.rv
        for attempt in range(1, MAX_ATTEMPTS + 1):
            blind = attempt == 1 and rv.version == 1 and not read_first
            current, included = (None, {}) if blind else self._current(rv)
            done = self._already(p, current, attempt)
            if done is not None:
                return done
            bundle_tx, retired = self._transaction(p.report_url, p.dr, p.observations, p.provenances, current,
                                                   included)
            try:
                response = self.client.transaction(bundle_tx)
            except VersionConflict:
                log.info("report %s v%d: version conflict on attempt %d, re-reading", rv.identifier["value"],
                         rv.version, attempt)
                continue
            first = (response.get("entry") or [{}])[0]
            if current is None and _entry_status(first) != 201:
                # Someone created this report between our read and our write: our conditional create matched
                # theirs. Re-read: if theirs is older, the If-Match path replaces it.
                log.info("report %s v%d: created concurrently, re-reading", rv.identifier["value"], rv.version)
                continue
            return self._written(p, first, attempt, retired)
        raise TransientError(f"report version did not settle after {MAX_ATTEMPTS} attempts (conflicts)")

    # --- several reports in one transaction ---

    def _currents(self, rvs: list[ReportVersion]) -> dict[str, tuple[dict | None, dict[str, dict]]] | None:
        """One search for several reports' server copies and their result Observations (by report token); None when
        the server holds several copies of one of them (each is then handled on its own, which says so)."""
        # FHIR search: a comma separates alternatives, so a comma inside a value is escaped with a backslash
        either = ",".join(rv.token.replace("\\", "\\\\").replace(",", "\\,") for rv in rvs)
        found = self.client.search("DiagnosticReport", {"identifier": either,
                                                        "_include": "DiagnosticReport:result",
                                                        "_count": str(len(rvs) + 1)})
        reports: dict[str, dict] = {}
        observations: dict[str, dict] = {}
        for entry in found.get("entry") or []:
            res = entry.get("resource") or {}
            mode = (entry.get("search") or {}).get("mode", "match")
            if res.get("resourceType") == "DiagnosticReport" and mode == "match":
                key = token((res.get("identifier") or [{}])[0])
                if key in reports:
                    return None
                reports[key] = res
            elif res.get("resourceType") == "Observation":
                observations[f"Observation/{res.get('id')}"] = res
        if any(link.get("relation") == "next" for link in found.get("link") or []):
            return None  # more than one page: not the common case; each on its own
        out: dict[str, tuple[dict | None, dict[str, dict]]] = {}
        for rv in rvs:
            dr = reports.get(rv.token)
            included = {}
            for ref in (dr or {}).get("result") or []:
                obs = observations.get(str(ref.get("reference", "")).split("/_history")[0])
                ident = (obs or {}).get("identifier", [{}])[0]
                if obs is not None and ident.get("value"):
                    included[token(ident)] = obs
            out[rv.token] = (dr, included)
        return out

    def deliver_many(self, bundles: list[dict]) -> list[Delivered | Exception]:
        """Several reports' versions (different reports) in one transaction: the server does less per report. Each
        result is a Delivered or the exception that report ends with (InvalidReport, PermanentError,
        TransientError). Whatever makes the shared transaction fail for one of them (a stale If-Match, a refusal)
        wrote nothing, so each is then written on its own: a refusal still touches that version alone."""
        out: list[Delivered | Exception | None] = [None] * len(bundles)
        prepared: list[tuple[int, _Prepared]] = []
        for i, bundle in enumerate(bundles):
            try:
                prepared.append((i, self._prepare(bundle)))
            except (InvalidReport, PermanentError, TransientError) as exc:
                out[i] = exc
        tokens = [p.rv.token for _, p in prepared]
        currents = {}
        later = [p.rv for _, p in prepared if p.rv.version > 1]
        try:
            if len(prepared) > 1 and len(set(tokens)) == len(tokens) and later:
                currents = self._currents(later)
        except TransientError as exc:
            return self._each_fails(out, prepared, exc)
        except PermanentError:
            currents = None
        if len(prepared) <= 1 or len(set(tokens)) < len(tokens) or currents is None:
            return self._one_by_one(out, prepared)
        entries: list[dict] = []
        parts: list[tuple[int, _Prepared, bool, int, int]] = []  # (index, report, created, first entry, retired)
        for i, p in prepared:
            current, included = currents.get(p.rv.token, (None, {}))
            done = self._already(p, current, 1)
            if done is not None:
                out[i] = done
                continue
            tx, retired = self._transaction(p.report_url, p.dr, p.observations, p.provenances, current, included)
            parts.append((i, p, current is None, len(entries), retired))
            entries.extend(tx["entry"])
        if not parts:
            return out  # type: ignore[return-value]
        try:
            response = self.client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries},
                                               timeout_scale=len(parts))  # n reports' work: n times as long
        except TransientError as exc:
            return self._each_fails(out, [(i, p) for i, p, *_ in parts], exc)
        except (VersionConflict, PermanentError) as exc:
            log.info("a transaction of %d reports was refused (%s): writing each on its own", len(parts),
                     exc.status)
            return self._one_by_one(out, [(i, p) for i, p, *_ in parts])
        answered = response.get("entry") or []
        redo = []
        for i, p, created, at, retired in parts:
            first = answered[at] if at < len(answered) else {}
            if created and _entry_status(first) != 201:
                redo.append((i, p))  # already there (a redelivery, or another writer): re-read, on its own
            else:
                out[i] = self._written(p, first, 1, retired)
        return self._one_by_one(out, redo, read_first=True)

    def _one_by_one(self, out: list, prepared: list[tuple[int, _Prepared]], read_first: bool = False) -> list:
        for n, (i, p) in enumerate(prepared):
            try:
                out[i] = self._deliver(p, read_first)
            except (PermanentError, InvalidReport) as exc:
                out[i] = exc
            except TransientError as exc:  # the server is unwell: the rest wait as well
                return self._each_fails(out, prepared[n:], exc)
        return out

    @staticmethod
    def _each_fails(out: list, prepared: list[tuple[int, _Prepared]], exc: Exception) -> list:
        for i, _ in prepared:
            out[i] = exc
        return out

    @staticmethod
    def _transaction(report_url: str, dr: dict, observations: list[tuple[str, dict]],
                     provenances: list[tuple[str, dict]], current: dict | None,
                     included: dict[str, dict]) -> tuple[dict, int]:
        entries: list[dict] = []
        ident = dr["identifier"][0]
        if current is None:
            body = {k: v for k, v in dr.items() if k != "id"}
            entries.append({"fullUrl": report_url, "resource": body,
                            "request": {"method": "POST", "url": "DiagnosticReport",
                                        "ifNoneExist": f"identifier={_url_token(ident)}"}})
        else:
            body = dict(dr, id=current["id"])
            version = (current.get("meta") or {}).get("versionId")
            request = {"method": "PUT", "url": f"DiagnosticReport/{current['id']}"}
            if version:
                request["ifMatch"] = f'W/"{version}"'
            entries.append({"fullUrl": report_url, "resource": body, "request": request})
        wanted = set()
        for url, obs in observations:
            oid = obs["identifier"][0]
            wanted.add(token(oid))
            existing = included.get(token(oid))
            body = {k: v for k, v in obs.items() if k != "id"}
            if current is None:
                request = {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={_url_token(oid)}"}
            elif existing is not None:
                body["id"] = existing["id"]
                request = {"method": "PUT", "url": f"Observation/{existing['id']}"}
            else:
                request = {"method": "PUT", "url": f"Observation?identifier={_url_token(oid)}"}
            entries.append({"fullUrl": url, "resource": body, "request": request})
        retired = 0
        for key, old in included.items():
            if key in wanted or old.get("status") == "entered-in-error":
                continue
            gone = copy.deepcopy(old)
            gone["status"] = "entered-in-error"
            gone = _stamp(gone, version_of(dr))
            entries.append({"resource": gone, "request": {"method": "PUT", "url": f"Observation/{old['id']}"}})
            retired += 1
        for url, prov in provenances:
            entries.append({"fullUrl": url, "resource": prov,
                            "request": {"method": "PUT", "url": f"Provenance/{prov['id']}"}})
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, retired
