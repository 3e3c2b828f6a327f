"""Fixtures of the dashboard store's tests: a fresh, migrated store on SQLite and on a throwaway PostgreSQL 15
(tests/support/postgres.py; marker `postgres`), and real report/analysis pairs analysed from samples/."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from integrations.dashboard.store import add_user, make_engine, migrate, session_factory
from integrations.dashboard.store.accounts import Account
from tests.support import postgres
from tests.support.dashboard_messages import Pair, real_pair, replicate
from tests.support.records import SAMPLES

SECRET = "test-identity-secret"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    why = postgres.available()
    if why:
        pytest.skip(why)
    with postgres.postgres_server() as url:
        yield url


@dataclass
class Store:
    url: str
    engine: Engine
    factory: sessionmaker[Session]
    backend: str

    def session(self) -> Session:
        return self.factory()

    def second_engine(self) -> Engine:
        """Another engine on the same database: a second replica."""
        return make_engine(self.url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dashboard.sqlite3'}"
    else:
        url = postgres.create_database(request.getfixturevalue("pg_server"), "t" + uuid.uuid4().hex[:12])
    migrate(url)
    engine = make_engine(url)
    yield Store(url, engine, session_factory(engine), request.param)
    engine.dispose()


@pytest.fixture(scope="session")
def ptbxl():
    from integrations.datasets.recordings import find_recordings

    return {r.record_id: r for r in find_recordings(SAMPLES / "ptbxl", prefer_500hz=True)}


@pytest.fixture(scope="session")
def pairs(ptbxl) -> dict[str, Pair]:
    """Real pairs by class: ischemic (PTB-XL 468), secondary (256, LBBB), indeterminate (1052), no-twi (2); and a
    patient's prior and follow-up ECG (PTB-XL 1514 then 1516, patient 555, both ischemic-pattern)."""
    out = {name: real_pair(ptbxl[rid], unit=unit, bed=bed)[0]
           for name, rid, unit, bed in (("ischemic", "468", "CCU", "1"), ("secondary", "256", "CCU", "2"),
                                        ("indeterminate", "1052", "ED", "7"), ("no-twi", "2", "ED", "8"))}
    first, state = real_pair(ptbxl["1514"], unit="CCU", bed="4")
    prior_ref = {"source_id": ptbxl["1514"].load().source_id, "acquired_at": None, "report_id": first.report_id}
    out["prior"] = first
    out["followup"] = real_pair(ptbxl["1516"], unit="CCU", bed="4", state=state, prior=prior_ref)[0]
    return out


def seed(store: Store, pairs: dict[str, Pair], n: int, *, with_analysis: bool = True) -> list[Pair]:
    """n alerts replicated from the real pairs (classes in turn), distinct report ids, patients, beds and times."""
    from integrations.dashboard.store import ingest_analysis, ingest_report

    sources = [pairs[k] for k in ("ischemic", "secondary", "indeterminate", "prior")]
    made = []
    with store.session() as s:
        for i in range(n):
            p = replicate(sources[i % len(sources)], report_id=f"r{i:05d}", mrn=f"MRN{i % 97:04d}",
                          unit=("CCU", "ED", "ICU")[i % 3], bed=str(i % 11), shift=timedelta(minutes=7 * i))
            ingest_report(s, p.report, p.headers, p.broker_ts_ms)
            if with_analysis:
                ingest_analysis(s, p.analysis)
            made.append(p)
        s.commit()
    return made


@pytest.fixture
def reviewer(store) -> Account:
    with store.session() as s:
        a = add_user(s, "rev-one", "reviewer", "correct horse battery")
        s.commit()
    return a


def now() -> datetime:
    return datetime.now(UTC)
