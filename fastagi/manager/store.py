"""Durable state in SQLite (WAL): what must survive a restart.

Every method commits before it returns, so an action replies only after its change is
on disk: a crash between the write and the reply can lose the reply, never the change.
With `sync="normal"` (SQLite's `synchronous=NORMAL` in WAL mode) committed data
survives a crash of the process; a power loss may lose the last transactions.
`sync="full"` adds an fsync to every commit, so they survive that too, at the price of
one fsync per change.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..model.profiles import Contact

INSERT_MESSAGE = ("INSERT INTO messages (account, chat, sender, body, direction, created, network_id) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, balance INTEGER NOT NULL, currency TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    account TEXT NOT NULL, handle TEXT NOT NULL,
    buddy INTEGER NOT NULL DEFAULT 0, authorized INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (account, handle));
CREATE TABLE IF NOT EXISTS auth_requests (
    account TEXT NOT NULL, handle TEXT NOT NULL, text TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (account, handle));
CREATE TABLE IF NOT EXISTS chats (
    account TEXT NOT NULL, name TEXT NOT NULL, partner TEXT NOT NULL,
    created REAL NOT NULL, left_at REAL, PRIMARY KEY (account, name));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, chat TEXT NOT NULL,
    sender TEXT NOT NULL, body TEXT NOT NULL, direction TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sms (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, number TEXT NOT NULL,
    body TEXT NOT NULL, status TEXT NOT NULL, price INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, partner TEXT NOT NULL,
    file_name TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL,
    direction TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER NOT NULL, account TEXT NOT NULL, partner TEXT NOT NULL, direction TEXT NOT NULL,
    status TEXT NOT NULL, failure_reason TEXT NOT NULL, started REAL NOT NULL,
    answered REAL, ended REAL NOT NULL, duration REAL NOT NULL, conference_id INTEGER,
    PRIMARY KEY (account, id));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, kind TEXT NOT NULL, account TEXT NOT NULL, fields TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started);
"""


def database_problem(path: Path) -> str | None:
    """Why the state could not be kept in `path` (None when it can); creates nothing.

    SQLite only fails on first use, with a bare "unable to open database file": this names the cause.
    """
    folder = path.parent
    if path.is_dir():
        return f"{path} is a folder, not a database file"
    if not folder.is_dir():
        return f"folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):  # SQLite creates its -wal and -shm files beside the database
        return f"folder {folder} is not writable"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True)
        try:
            db.execute("PRAGMA schema_version")
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path}: {exc}"
    return None


def _create_owner_only(path: Path) -> None:
    """Create the database file 0600 if it is not there: it holds chats and SMS. SQLite gives its -wal
    and -shm files the database file's mode, umask or not; an existing file keeps the mode it has."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return
    os.chmod(path, 0o600)  # a umask such as 0277 takes the owner's write bit too


class DatabaseInUse(Exception):
    """Another process holds the database's lock: two writers would each keep their own balances."""


def _lock_beside(path: Path) -> int:
    """Take `PATH.lock` for this process's life (released by closing it, or by the process's end)
    and write our pid in it; DatabaseInUse names the holder's."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise DatabaseInUse(f"database {path} is in use by another skype-fastagi (pid {holder})") from None
    os.fchmod(fd, 0o600)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Store:
    def __init__(self, path: Path | str, sync: str = "normal") -> None:
        self.path = str(path)
        self._lock = _lock_beside(Path(path))
        _create_owner_only(Path(path))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute({"normal": "PRAGMA synchronous=NORMAL", "full": "PRAGMA synchronous=FULL"}[sync])
        self._db.executescript(SCHEMA)
        self._migrate()
        self._contacts: dict[tuple[str, str], Contact] = {}
        self._open_chats: dict[tuple[str, str], str | None] = {}
        self._open_chat_rows: set[tuple[str, str]] = set()
        """(account, chat) whose chats row `add_message` wrote open and no leave closed since (`_open_chats` is another
        thing: the newest open chat per partner)."""
        self._balances: dict[str, tuple[int, str]] = {
            row["name"]: (row["balance"], row["currency"]) for row in self._rows("SELECT * FROM accounts")
        }

    def _migrate(self) -> None:
        """Bring a database made by an earlier version up to this schema."""
        columns = {row["name"] for row in self._rows("PRAGMA table_info(messages)")}
        if "network_id" not in columns:
            self._write("ALTER TABLE messages ADD COLUMN network_id TEXT NOT NULL DEFAULT ''")
        self._write("CREATE UNIQUE INDEX IF NOT EXISTS messages_network_id ON messages (account, network_id) "
                    "WHERE network_id != ''")

    def close(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        os.close(self._lock)

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._db:  # one transaction, committed on return
            return self._db.execute(sql, params)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    def _row(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        return self._db.execute(sql, params).fetchone()

    # -- counters (ids that must never be reused across restarts) ----------------
    def next_id(self, name: str, start: int = 1) -> int:
        with self._db:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + 1",
                (name, start),
            )
            return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    # -- accounts --------------------------------------------------------------
    def balance(self, name: str) -> tuple[int, str] | None:
        """From memory: only this class changes balances, and it keeps `_balances` equal to the table."""
        return self._balances.get(name)

    def ensure_account(self, name: str, balance: int, currency: str) -> tuple[int, str]:
        """The stored balance of an account; the config's value seeds it only once."""
        self._write("INSERT OR IGNORE INTO accounts (name, balance, currency) VALUES (?, ?, ?)", (name, balance, currency))
        row = self._row("SELECT balance, currency FROM accounts WHERE name = ?", (name,))
        assert row is not None
        self._balances[name] = row["balance"], row["currency"]
        return self._balances[name]

    def charge(self, account: str, amount: int) -> int | None:
        """Take `amount` off the balance if it is there; the new balance, or None when short."""
        with self._db:
            cur = self._db.execute(
                "UPDATE accounts SET balance = balance - ? WHERE name = ? AND balance >= ?", (amount, account, amount)
            )
            if cur.rowcount == 0:
                return None
            row = self._db.execute("SELECT balance, currency FROM accounts WHERE name = ?", (account,)).fetchone()
        self._balances[account] = row["balance"], row["currency"]
        return int(row["balance"])

    # -- contacts --------------------------------------------------------------
    def contact(self, account: str, handle: str) -> Contact:
        """A contact's flags; kept in memory once read, as only `set_contact` changes them."""
        key = (account, handle)
        if key not in self._contacts:
            row = self._row("SELECT buddy, authorized, blocked FROM contacts WHERE account = ? AND handle = ?", key)
            self._contacts[key] = (
                Contact(row["buddy"], bool(row["authorized"]), bool(row["blocked"])) if row else Contact()
            )
        return self._contacts[key]

    def set_contact(self, account: str, handle: str, **flags: Any) -> Contact:
        """Change some of a contact's flags (`buddy`, `authorized`, `blocked`); the contact as now stored."""
        current = replace(self.contact(account, handle), **flags)
        self._contacts.pop((account, handle))  # read again from the table should the write fail
        values = asdict(current)
        self._write(
            "INSERT INTO contacts (account, handle, buddy, authorized, blocked) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(account, handle) DO UPDATE SET buddy = excluded.buddy, "
            "authorized = excluded.authorized, blocked = excluded.blocked",
            (account, handle, values["buddy"], int(values["authorized"]), int(values["blocked"])),
        )
        self._contacts[(account, handle)] = current
        return current

    def add_auth_request(self, account: str, handle: str, text: str) -> bool:
        """Keep a buddy request until it is answered; False when one from `handle` is already pending."""
        return self._write(
            "INSERT OR IGNORE INTO auth_requests (account, handle, text, created) VALUES (?, ?, ?, ?)",
            (account, handle, text, time.time()),
        ).rowcount > 0

    def pending_auth_requests(self, account: str) -> int:
        row = self._row("SELECT COUNT(*) AS n FROM auth_requests WHERE account = ?", (account,))
        return int(row["n"]) if row else 0

    def pop_auth_request(self, account: str, handle: str) -> bool:
        return self._write("DELETE FROM auth_requests WHERE account = ? AND handle = ?", (account, handle)).rowcount > 0

    # -- chats -----------------------------------------------------------------
    def open_chat(self, account: str, partner: str) -> str | None:
        """The newest open chat with `partner`; remembered until a message or a leave may change the answer."""
        key = (account, partner)
        if key not in self._open_chats:
            row = self._row(
                "SELECT name FROM chats WHERE account = ? AND partner = ? AND left_at IS NULL ORDER BY created DESC LIMIT 1",
                key,
            )
            self._open_chats[key] = row["name"] if row else None
        return self._open_chats[key]

    def chat(self, account: str, name: str) -> sqlite3.Row | None:
        return self._row("SELECT * FROM chats WHERE account = ? AND name = ?", (account, name))

    def leave_chat(self, account: str, name: str) -> bool:
        for key in [key for key, open_chat in self._open_chats.items() if key[0] == account and open_chat == name]:
            del self._open_chats[key]
        self._open_chat_rows.discard((account, name))
        return self._write(
            "UPDATE chats SET left_at = ? WHERE account = ? AND name = ? AND left_at IS NULL", (time.time(), account, name)
        ).rowcount > 0

    def chats(self, account: str) -> list[sqlite3.Row]:
        return self._rows("SELECT * FROM chats WHERE account = ? ORDER BY created", (account,))

    def add_message(
        self, account: str, chat: str, partner: str, sender: str, body: str, direction: str, network_id: str = ""
    ) -> int | None:
        """Store a message and (re)open its chat with `partner`, both or neither; returns the message's id.

        None when a message with the same `network_id` is already stored (nothing is written).
        """
        now = time.time()
        row = (account, chat, sender, body, direction, now, network_id)
        if (account, chat) in self._open_chat_rows:  # the chat's row needs no write: one statement, no transaction
            cur = self._db.execute(INSERT_MESSAGE, row)
            return int(cur.lastrowid or 0) if cur.rowcount else None
        self._db.execute("BEGIN IMMEDIATE")  # autocommit connection: the two writes are one transaction here
        try:
            cur = self._db.execute(INSERT_MESSAGE, row)
            if cur.rowcount == 0:
                self._db.execute("ROLLBACK")
                return None
            self._db.execute(
                "INSERT INTO chats (account, name, partner, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(account, name) DO UPDATE SET left_at = NULL",
                (account, chat, partner, now),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._open_chat_rows.add((account, chat))
        if self._open_chats.get((account, partner), "") != chat:  # the newest open chat may have changed
            self._open_chats.pop((account, partner), None)
        return int(cur.lastrowid or 0)

    def messages(self, account: str, chat: str | None = None) -> list[sqlite3.Row]:
        if chat is None:
            return self._rows("SELECT * FROM messages WHERE account = ? ORDER BY id", (account,))
        return self._rows("SELECT * FROM messages WHERE account = ? AND chat = ? ORDER BY id", (account, chat))

    # -- SMS -------------------------------------------------------------------
    def add_sms(self, account: str, number: str, body: str, status: str, price: int) -> int:
        cur = self._write(
            "INSERT INTO sms (account, number, body, status, price, created) VALUES (?, ?, ?, ?, ?, ?)",
            (account, number, body, status, price, time.time()),
        )
        return int(cur.lastrowid or 0)

    def sms(self, account: str) -> list[sqlite3.Row]:
        return self._rows("SELECT * FROM sms WHERE account = ? ORDER BY id", (account,))

    # -- file transfers --------------------------------------------------------
    def add_transfer(self, account: str, partner: str, file_name: str, path: str, status: str, direction: str) -> int:
        cur = self._write(
            "INSERT INTO transfers (account, partner, file_name, path, status, direction, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account, partner, file_name, path, status, direction, time.time()),
        )
        return int(cur.lastrowid or 0)

    # -- call history ----------------------------------------------------------
    def add_call(self, record: dict[str, Any]) -> None:
        columns = ", ".join(record)
        marks = ", ".join("?" for _ in record)
        self._write(f"INSERT OR REPLACE INTO calls ({columns}) VALUES ({marks})", tuple(record.values()))

    def calls(self, account: str | None = None) -> list[sqlite3.Row]:
        if account is None:
            return self._rows("SELECT * FROM calls ORDER BY ended")
        return self._rows("SELECT * FROM calls WHERE account = ? ORDER BY ended", (account,))

    def call_history(self, account: str | None = None, since: float | None = None, until: float | None = None,
                     limit: int | None = None) -> list[sqlite3.Row]:
        """Ended calls, oldest first: those of `account`, started at or after `since` and before `until`, the
        newest `limit` of them."""
        where, params = ["1"], []
        for clause, value in (("account = ?", account), ("started >= ?", since), ("started < ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        newest = self._rows(f"SELECT * FROM calls WHERE {' AND '.join(where)} ORDER BY started DESC, id DESC LIMIT ?",
                            (*params, -1 if limit is None else limit))
        return newest[::-1]

    # -- recent events (`show events` across restarts) --------------------------------
    def add_events(self, rows: list[tuple[float, str, str, str]], keep: int) -> None:
        """Append (time, kind, account, fields as JSON) rows in one transaction; past 2 × `keep` rows, the oldest
        go, down to `keep` (so the cost of trimming is paid once every `keep` events)."""
        with self._db:
            cur = self._db.executemany("INSERT INTO events (time, kind, account, fields) VALUES (?, ?, ?, ?)", rows)
            last = self._db.execute("SELECT max(id) FROM events").fetchone()[0]
            if cur.rowcount and last is not None and last % keep < len(rows):  # crossed a multiple of `keep`
                self._db.execute("DELETE FROM events WHERE id <= ?", (last - keep,))

    def recent_events(self, count: int) -> list[sqlite3.Row]:
        """The last `count` events, oldest first."""
        return self._rows("SELECT * FROM events ORDER BY id DESC LIMIT ?", (count,))[::-1]

