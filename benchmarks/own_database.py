"""A MongoDB of the benchmark's own, so a long run cannot lose its database mid-way.

FiftyOne's local service joins any mongod the same OS user already runs (a test session's, an
App's), whatever its database folder, and that mongod goes away when its owner ends. A benchmark
that imports this module before FiftyOne runs on FiftyOne's own mongod binary, in a temporary
folder, on a free port, stopped and removed at exit.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

OWN_DATABASE_FOLDER = "CVTRIAGE_BENCHMARK_DATABASE"


def start_own_database(prefix: str) -> Path:
    """Start the mongod and point FiftyOne at it (FIFTYONE_DATABASE_URI, read when FiftyOne is
    imported); returns the temporary folder, which holds the database and the mongod's log."""
    if os.environ.get(OWN_DATABASE_FOLDER):  # a worker process (spawned pools import the script again)
        return Path(os.environ[OWN_DATABASE_FOLDER])
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        raise SystemExit("FIFTYONE_DATABASE_URI is set: the benchmark starts a database of its own; unset it")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    mongod = Path(importlib.util.find_spec("fiftyone").origin).parent / "db" / "bin" / "mongod"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (work / "db").mkdir()
    server = subprocess.Popen([str(mongod), "--dbpath", str(work / "db"), "--port", str(port), "--bind_ip", "127.0.0.1",
                               "--nounixsocket", "--logpath", str(work / "mongod.log")])  # fmt: skip
    atexit.register(lambda: (server.terminate(), server.wait(timeout=60)))  # runs before the rmtree above
    # Stopped with SIGTERM (kill, a job scheduler), exit as from Ctrl-C so the above still runs
    # and no mongod is left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
    os.environ["FIFTYONE_DATABASE_NAME"] = work.name
    os.environ[OWN_DATABASE_FOLDER] = str(work)
    return work
