"""FiftyOne's database when a team shares one (FIFTYONE_DATABASE_URI): reaching it, and one
writer per dataset at a time.

FiftyOne connects lazily and, when its MongoDB does not answer, fails after pymongo's 30 s
default with a message that does not say where it looked; `connect_database` asks first, for a
few seconds, and names the URI without its password. Two scans storing events in one dataset
at once would interleave FiftyOne's steps (create the dataset, add samples, delete the video's
previous ones, rebuild the looks index and saved views) and could leave a dataset with one
video's events twice or a broken similarity index: `dataset_write_lock` makes the second writer
wait for the first (a lease in the database itself, so writers on any machine see it).
"""

from __future__ import annotations

import atexit
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from cvtriage.errors import CvtriageError

CONNECT_TIMEOUT_S = 5.0
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
    """Connect FiftyOne now. With a shared database (`database_uri`) one that does not answer is a
    one-line error within seconds, and this process will not delete other users' datasets at exit."""
    import fiftyone as fo

    uri = fo.config.database_uri
    if uri is None:
        return  # FiftyOne's own private mongod, started on first use
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
        reason = str(error).splitlines()[0][:200] if str(error).strip() else type(error).__name__
        reason = reason.replace(uri, redacted_uri(uri))  # pymongo may quote the URI back
        raise CvtriageError(f"the FiftyOne database at {redacted_uri(uri)} (FIFTYONE_DATABASE_URI): {reason}") from None
    from fiftyone.core.odm import database

    database.get_db_conn()
    # At exit FiftyOne deletes every non-persistent dataset when it believes it is the database's
    # only client; on a team's database those are other people's scratch datasets.
    atexit.unregister(database._delete_non_persistent_datasets_if_allowed)


@contextmanager
def dataset_write_lock(dataset_name: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the write lease on `dataset_name` (waiting for another writer to finish) for the block."""
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
