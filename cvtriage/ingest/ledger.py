"""The watcher's state: every pair, and every file sent to quarantine, in one SQLite file under OUT.

Nothing about a pair lives only in memory. Each change is one transaction (SQLite, WAL journal),
complete once it returns, so a watcher stopped at any point (kill -9 included) restarts from
exactly what the ledger says:
- a pair is `waiting` (one half has arrived), `ready` (both), `processed` or `quarantined`;
- a quarantine is written here *before* its files move (a `moves` row), and the move is
  finished at the next start if the watcher died in between, so a bad file is never lost;
- a processed pair keeps its `pairs.csv` row, so a row lost with a kill between the ledger and
  the CSV is appended at the next start (see cvtriage.ingest.pairs).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cvtriage.errors import CvtriageError

WAITING, READY, PROCESSED, QUARANTINED = "waiting", "ready", "processed", "quarantined"
IMAGE, SIDECAR = "image", "sidecar"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    name TEXT PRIMARY KEY,            -- the shared stem: NAME of NAME.jpg + NAME.json
    state TEXT NOT NULL,
    image TEXT, image_stamp TEXT,     -- file name and "size:mtime_ns" of each half seen
    sidecar TEXT, sidecar_stamp TEXT,
    first_seen REAL NOT NULL,         -- when the first half of this attempt arrived (pair timeout)
    updated REAL NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,     -- lone half reported after the pair timeout
    redelivered INTEGER NOT NULL DEFAULT 0,  -- halves arriving again after processing
    attempts INTEGER NOT NULL DEFAULT 1,     -- 1 + times re-delivered after a quarantine
    reason TEXT,
    row TEXT                          -- the pairs.csv row (JSON list) of a processed pair
);
CREATE INDEX IF NOT EXISTS pairs_state ON pairs (state);
CREATE TABLE IF NOT EXISTS moves (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, original TEXT NOT NULL, destination TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL, at REAL NOT NULL, done INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Pair:
    name: str
    state: str
    image: str | None
    sidecar: str | None
    first_seen: float
    reported: bool
    image_stamp: str | None = None
    sidecar_stamp: str | None = None


@dataclass(frozen=True)
class Move:
    id: int
    name: str
    original: str
    destination: str
    reason: str
    at: float


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a killed process
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise CvtriageError(f"{self.path}: not a usable ledger ({error})") from None
        version = self._meta("schema_version")
        if version is None:
            self._set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise CvtriageError(f"{self.path}: ledger of another cvtriage version (schema {version}); use another --out")

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bind_folder(self, folder: Path) -> None:
        """A ledger holds the state of one watched folder: refuse to mix another's into it."""
        watched = self._meta("folder")
        if watched is None:
            self._set_meta("folder", str(folder))
        elif watched != str(folder):
            raise CvtriageError(f"{self.path.parent}: holds the state of watching {watched}; use another --out for {folder}")

    def _transaction(self):
        return _Transaction(self.db)

    def pair(self, name: str) -> Pair | None:
        row = self.db.execute(
            "SELECT name, state, image, sidecar, first_seen, reported FROM pairs WHERE name = ?", (name,)
        ).fetchone()
        return Pair(*row[:5], bool(row[5])) if row else None

    def arrive(self, name: str, kind: str, filename: str, stamp: str, now: float | None = None) -> str:
        """Record a settled half that arrived at `now` (default: now). Returns what it was: `waiting` / `ready` (the pair's new state),
        `same` (known already), `redelivered` (a half of a processed pair, written again: a pair
        is processed once), or `conflict` (a second, different image for one name)."""
        now = time.time() if now is None else now
        with self._transaction():
            row = self.db.execute(
                f"SELECT state, image, sidecar, {kind}_stamp FROM pairs WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                self.db.execute(
                    f"INSERT INTO pairs (name, state, {kind}, {kind}_stamp, first_seen, updated) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, WAITING, filename, stamp, now, now),
                )
                return WAITING
            state, image, sidecar, known_stamp = row
            present = {IMAGE: image, SIDECAR: sidecar}
            if state == PROCESSED:
                if present[kind] == filename and known_stamp == stamp:
                    return "same"
                self.db.execute(
                    f"UPDATE pairs SET redelivered = redelivered + 1, {kind}_stamp = ?, updated = ? WHERE name = ?",
                    (stamp, now, name),
                )
                return "redelivered"
            if state == QUARANTINED:  # delivered again after a quarantine: a fresh attempt
                self.db.execute(
                    f"""UPDATE pairs SET state = ?, image = NULL, image_stamp = NULL, sidecar = NULL,
                        sidecar_stamp = NULL, {kind} = ?, {kind}_stamp = ?, first_seen = ?, updated = ?,
                        reported = 0, reason = NULL, attempts = attempts + 1 WHERE name = ?""",
                    (WAITING, filename, stamp, now, now, name),
                )
                return WAITING
            if present[kind] is not None and present[kind] != filename:
                return "conflict"
            present[kind] = filename
            new_state = READY if present[IMAGE] and present[SIDECAR] else WAITING
            self.db.execute(
                f"UPDATE pairs SET state = ?, {kind} = ?, {kind}_stamp = ?, updated = ? WHERE name = ?",
                (new_state, filename, stamp, now, name),
            )
            return new_state if new_state != state or known_stamp is None else "same"

    def forget_half(self, name: str, kind: str) -> None:
        """A half deleted or rewritten after it settled, before it was processed: wait for it again."""
        with self._transaction():
            self.db.execute(
                f"UPDATE pairs SET state = ?, {kind} = NULL, {kind}_stamp = NULL, updated = ? WHERE name = ? AND state = ?",
                (WAITING, time.time(), name, READY),
            )

    def ready(self, limit: int) -> list[Pair]:
        rows = self.db.execute(
            """SELECT name, state, image, sidecar, first_seen, reported, image_stamp, sidecar_stamp
               FROM pairs WHERE state = ? ORDER BY first_seen LIMIT ?""",
            (READY, limit),
        ).fetchall()
        return [Pair(*row[:5], bool(row[5]), *row[6:]) for row in rows]

    def mark_processed(self, rows: dict[str, list]) -> None:
        """Pairs done (FiftyOne holds their samples), with their pairs.csv rows; one transaction."""
        now = time.time()
        with self._transaction():
            self.db.executemany(
                "UPDATE pairs SET state = ?, row = ?, updated = ? WHERE name = ?",
                [(PROCESSED, json.dumps(row), now, name) for name, row in rows.items()],
            )

    def processed_rows(self) -> list[tuple[str, list]]:
        rows = self.db.execute("SELECT name, row FROM pairs WHERE state = ? ORDER BY updated, name", (PROCESSED,))
        return [(name, json.loads(row)) for name, row in rows]

    def plan_quarantine(self, name: str, files: list[tuple[Path, Path]], reason: str, is_pair: bool) -> list[Move]:
        """Record the moves of `files` ((original, destination) pairs) to quarantine, and the
        pair's state, before anything moves."""
        now = time.time()
        with self._transaction():
            if is_pair:
                self.db.execute(
                    "UPDATE pairs SET state = ?, reason = ?, updated = ? WHERE name = ?", (QUARANTINED, reason, now, name)
                )
            ids = [
                self.db.execute(
                    "INSERT INTO moves (name, original, destination, reason, at) VALUES (?, ?, ?, ?, ?)",
                    (name, str(original), str(destination), reason, now),
                ).lastrowid
                for original, destination in files
            ]
        return [Move(id, name, str(o), str(d), reason, now) for id, (o, d) in zip(ids, files)]

    def unfinished_moves(self) -> list[Move]:
        rows = self.db.execute("SELECT id, name, original, destination, reason, at FROM moves WHERE done = 0 ORDER BY id")
        return [Move(*row) for row in rows]

    def move_done(self, move_id: int) -> None:
        self.db.execute("UPDATE moves SET done = 1 WHERE id = ?", (move_id,))

    def pending_move_of(self, original: Path) -> bool:
        row = self.db.execute("SELECT 1 FROM moves WHERE original = ? AND done = 0", (str(original),)).fetchone()
        return row is not None

    def quarantined_files(self) -> list[Move]:
        rows = self.db.execute("SELECT id, name, original, destination, reason, at FROM moves ORDER BY id")
        return [Move(*row) for row in rows]

    def destination_taken(self, destination: Path) -> bool:
        row = self.db.execute("SELECT 1 FROM moves WHERE destination = ?", (str(destination),)).fetchone()
        return row is not None

    def lone_halves(self, older_than: float) -> list[Pair]:
        """Waiting pairs whose first half arrived before `older_than` (a time.time() value)."""
        rows = self.db.execute(
            "SELECT name, state, image, sidecar, first_seen, reported FROM pairs WHERE state = ? AND first_seen < ? ORDER BY first_seen",
            (WAITING, older_than),
        ).fetchall()
        return [Pair(*row[:5], bool(row[5])) for row in rows]

    def mark_reported(self, names: list[str]) -> None:
        with self._transaction():
            self.db.executemany("UPDATE pairs SET reported = 1 WHERE name = ?", [(name,) for name in names])

    def counts(self) -> dict[str, int]:
        counts = {WAITING: 0, READY: 0, PROCESSED: 0, QUARANTINED: 0}
        counts.update(dict(self.db.execute("SELECT state, COUNT(*) FROM pairs GROUP BY state").fetchall()))
        counts["redelivered"] = self.db.execute("SELECT COALESCE(SUM(redelivered), 0) FROM pairs").fetchone()[0]
        counts["quarantined_files"] = self.db.execute("SELECT COUNT(*) FROM moves").fetchone()[0]
        return counts


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an error: all of a change or none of it."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, error, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
