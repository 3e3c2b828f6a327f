"""Accounts (argon2id), server-side sessions with hashed tokens and idle timeout, CSRF tokens, the login rate limit
across replicas, pseudonyms."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from integrations.dashboard.store import (
    AccountExists,
    add_user,
    authenticate,
    check_csrf,
    create_session,
    disable_user,
    end_session,
    list_users,
    login_allowed,
    note_login,
    pseudonym,
    session_account,
    session_factory,
    set_password,
)
from integrations.dashboard.store.models import AccountRow, UserSession


def test_users_and_passwords(store):
    with store.session() as s:
        add_user(s, "alice", "admin", "a long passphrase")
        with pytest.raises(AccountExists):
            add_user(s, "alice", "reviewer", "another passphrase")
        with pytest.raises(ValueError):
            add_user(s, "bob", "reviewer", "short")
        s.commit()
        stored = s.scalar(select(AccountRow.password_hash).where(AccountRow.name == "alice"))
        assert stored.startswith("$argon2id$") and "passphrase" not in stored
        assert authenticate(s, "alice", "a long passphrase").role == "admin"
        assert authenticate(s, "alice", "wrong passphrase") is None
        assert authenticate(s, "nobody", "a long passphrase") is None
        set_password(s, "alice", "a new passphrase")
        assert authenticate(s, "alice", "a long passphrase") is None
        assert authenticate(s, "alice", "a new passphrase") is not None
        disable_user(s, "alice")
        s.commit()
        assert authenticate(s, "alice", "a new passphrase") is None
        assert [(u.name, u.active) for u in list_users(s)] == [("alice", False)]


def test_sessions_idle_timeout_and_end(store, reviewer):
    with store.session() as s:
        token, csrf = create_session(s, reviewer)
        s.commit()
        hashes = list(s.scalars(select(UserSession.token_hash)))
    assert token not in hashes and len(hashes[0]) == 64  # only the hash is stored
    with store.session() as s:
        account, got_csrf = session_account(s, token, idle_timeout_s=60)
        s.commit()
    assert account.name == "rev-one" and got_csrf == csrf and check_csrf(csrf, got_csrf)
    assert not check_csrf(csrf, "forged") and not check_csrf(csrf, None)
    assert session_account(store.session(), "not-a-token", 60) is None
    time.sleep(1.2)
    with store.session() as s:
        assert session_account(s, token, idle_timeout_s=1.0) is None  # idle too long: ended
        s.commit()
        assert session_account(s, token, idle_timeout_s=60) is None  # and stays ended
    with store.session() as s:
        token2, _ = create_session(s, reviewer)
        s.commit()
        end_session(s, token2)
        s.commit()
        assert session_account(s, token2, 60) is None
        token3, _ = create_session(s, reviewer)
        disable_user(s, "rev-one")
        s.commit()
        assert session_account(s, token3, 60) is None  # a disabled account's sessions end


def test_login_rate_limit_holds_across_replicas(store):
    """Failures noted through one replica's engine count on the other's."""
    engine_b = store.second_engine()
    other = session_factory(engine_b)
    for i in range(3):
        with (store.session() if i % 2 else other()) as s:
            assert login_allowed(s, "alice", "10.0.0.9", attempts=3, window_s=60)
            note_login(s, "alice", "10.0.0.9", ok=False)
            s.commit()
    with store.session() as s:
        assert not login_allowed(s, "alice", "10.0.0.9", attempts=3, window_s=60)
        assert login_allowed(s, "alice", "10.0.0.10", attempts=3, window_s=60)  # another address
    with other() as s:
        assert not login_allowed(s, "alice", "10.0.0.9", attempts=3, window_s=60)
        assert login_allowed(s, "alice", "10.0.0.9", attempts=3, window_s=0.5) is False
    time.sleep(0.6)
    with other() as s:
        assert login_allowed(s, "alice", "10.0.0.9", attempts=3, window_s=0.5)  # the window passed
    # one address spraying many names is refused too
    with store.session() as s:
        for i in range(12):
            note_login(s, f"user{i}", "10.0.0.66", ok=False)
        s.commit()
        assert not login_allowed(s, "fresh-name", "10.0.0.66", attempts=3, window_s=60)
    engine_b.dispose()


def test_pseudonym_is_keyed_and_short():
    a = pseudonym("alice", "secret-1")
    assert len(a) == 16 and a != pseudonym("alice", "secret-2") and a == pseudonym("alice", "secret-1")
    assert "alice" not in a


def test_background_checks_do_not_keep_an_idle_session_alive(store, reviewer):
    """An open page's live updates check the session without touching it, so a forgotten tab still idles out."""
    with store.session() as s:
        token, _ = create_session(s, reviewer)
        s.commit()
    for _ in range(3):
        time.sleep(0.5)
        with store.session() as s:
            assert session_account(s, token, idle_timeout_s=2.0, touch=False) is not None
            s.commit()
    time.sleep(0.8)
    with store.session() as s:  # 2.3 s since the last touch: idled out although checked three times meanwhile
        assert session_account(s, token, idle_timeout_s=2.0, touch=False) is None
        s.commit()
