"""The SQLite store: what an administrator's `database_sync` choice does, and balances kept equal to the table."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from fastagi.manager.store import Store
from fastagi.model.profiles import Contact


@pytest.mark.parametrize("sync, level", [("normal", 1), ("full", 2)])
def test_database_sync_sets_sqlite_synchronous(tmp_path: Path, sync: str, level: int) -> None:
    store = Store(tmp_path / "state.db", sync)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == level
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_balance_in_memory_equals_the_table_across_charges_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    assert store.balance("alice") is None
    assert store.ensure_account("alice", 1000, "EUR") == (1000, "EUR")
    assert store.ensure_account("alice", 5, "USD") == (1000, "EUR")  # the config seeds it only once
    assert store.charge("alice", 30) == 970
    assert store.charge("alice", 5000) is None  # short: nothing taken
    assert store.balance("alice") == (970, "EUR")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT balance FROM accounts WHERE name = 'alice'").fetchone()[0] == 970
    store.close()
    assert Store(path).balance("alice") == (970, "EUR")


def test_remembered_contacts_and_open_chats_follow_every_change(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    assert store.contact("alice", "bob") == Contact(buddy=0, authorized=False, blocked=False)
    assert store.set_contact("alice", "bob", blocked=True) == Contact(blocked=True)
    assert store.contact("alice", "bob") == Contact(blocked=True)

    assert store.open_chat("alice", "bob") is None
    store.add_message("alice", "#alice/$bob;1", "bob", "alice", "hi", "outgoing")
    assert store.open_chat("alice", "bob") == "#alice/$bob;1"
    assert store.leave_chat("alice", "#alice/$bob;1")
    assert store.open_chat("alice", "bob") is None
    store.add_message("alice", "#alice/$bob;2", "bob", "bob", "again", "incoming")
    assert store.open_chat("alice", "bob") == "#alice/$bob;2"
    store.close()
    reopened = Store(path)
    assert reopened.open_chat("alice", "bob") == "#alice/$bob;2"
    assert reopened.contact("alice", "bob") == Contact(blocked=True)


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277])
def test_the_database_and_its_wal_files_are_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    before = os.umask(umask)
    try:
        store = Store(tmp_path / "state.db")
        store.add_sms("alice", "+4915112345678", "private", "SENT", 10)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        store.close()
    finally:
        os.umask(before)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600, "state.db.lock": 0o600}
