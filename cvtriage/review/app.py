"""The App: open cvtriage's datasets (scan events, audited labels) in the FiftyOne App.

People look at scan events and audit findings in the App, tag them (the review loop's decisions,
cvtriage.decision_tags) and correct labels there (or in CVAT / Label Studio through FiftyOne's
annotation API); cvtriage.review.export writes corrected labels back as a YOLO dataset.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fiftyone as fo
import fiftyone.core.service as fos

from cvtriage.errors import CvtriageError, first_line
from cvtriage.paths import REVIEW_PLUGIN_DIR, user_cache_dir
from cvtriage.review.app_decisions import refresh_review_queues
from cvtriage.scan.priority import REVIEW_QUEUE_VIEW

DEFAULT_PORT = 5151
LOOPBACK = "127.0.0.1"
# Loggers that print FiftyOne's own launch banner and ssh advice; the CLI prints its own.
_SESSION_LOGGERS = ("fiftyone.core.session.session", "fiftyone.core.session")
# The links in the App's plugins folder when the user has one of their own (plugins_beside).
REVIEW_PLUGIN_LINK, USER_PLUGINS_LINK = "cvtriage-review", "yours"


# ---------------------------------------------------------------------------------------------
# Finding datasets


def _describe_existing(names: list[str]) -> str:
    if not names:
        return "there are no FiftyOne datasets yet: run `cvtriage scan` or `cvtriage audit-labels` first"
    return f"existing datasets: {', '.join(sorted(names))}"


def is_cvtriage_dataset(dataset: fo.Dataset) -> bool:
    """Written by cvtriage: a label dataset (records its data.yaml or COCO file) or a scan."""
    return (
        "data_yaml" in dataset.info
        or "coco_json" in dataset.info
        or "source_video" in dataset.get_field_schema()
        or dataset.name.startswith("cvtriage")
    )


def load_review_dataset(name: str | None = None) -> fo.Dataset:
    """The dataset called `name`, or when None the most recently modified cvtriage dataset."""
    if name is not None:
        if not fo.dataset_exists(name):
            raise CvtriageError(f"no FiftyOne dataset named '{name}' ({_describe_existing(fo.list_datasets())})")
        return fo.load_dataset(name)
    infos = fo.list_datasets(info=True)
    newest_first = sorted(
        infos, key=lambda info: info["last_modified_at"] or info["created_at"], reverse=True
    )
    for info in newest_first:
        dataset = fo.load_dataset(info["name"])
        if is_cvtriage_dataset(dataset):
            return dataset
    names = [info["name"] for info in infos]
    if names:
        raise CvtriageError(f"no cvtriage dataset found: name one ({_describe_existing(names)})")
    raise CvtriageError(_describe_existing(names))


# ---------------------------------------------------------------------------------------------
# The App


def register_review_plugin() -> None:
    """Point FiftyOne at the review plugin shipped in the package (decide with a key), for this
    process and the App server it starts (which reads its settings from the environment). FiftyOne
    takes one plugins folder: where the user has one holding plugins, the App gets a folder of links
    to both (`plugins_beside`), so theirs stay at hand; where links cannot be made, ours alone, with
    a warning."""
    folder = str(REVIEW_PLUGIN_DIR)
    own = fo.config.plugins_dir
    if own and os.path.realpath(own) != os.path.realpath(folder) and any(Path(own).rglob("fiftyone.y*ml")):
        try:
            folder = str(plugins_beside(Path(own)))
        except OSError as error:
            logging.getLogger("cvtriage").warning(
                "the App uses cvtriage's review plugin folder, not your plugins folder %s, while cvtriage app runs (%s)",
                own, first_line(error),
            )  # fmt: skip
    os.environ["FIFTYONE_PLUGINS_DIR"] = folder
    fo.config.plugins_dir = folder


def plugins_beside(own: Path) -> Path:
    """A plugins folder holding a link to cvtriage's review plugin and one to the user's plugins
    folder `own` (FiftyOne follows links when it looks for plugins), in cvtriage's cache folder, one
    per folder of the user's. Each link is swapped in whole, so two Apps starting at once agree."""
    target = Path(os.path.realpath(own))
    folder = user_cache_dir() / "plugins" / hashlib.sha256(str(target).encode()).hexdigest()[:12]
    if folder.resolve().is_relative_to(target):
        raise OSError(f"cvtriage's cache folder {folder} lies inside it")  # a link to it would loop
    folder.mkdir(parents=True, exist_ok=True)
    for name, destination in ((REVIEW_PLUGIN_LINK, REVIEW_PLUGIN_DIR), (USER_PLUGINS_LINK, target)):
        link = folder / name
        if link.is_symlink() and os.path.realpath(link) == os.path.realpath(destination):
            continue
        swap = folder / f".{name}-{os.getpid()}"  # hidden: FiftyOne skips it should it be left
        swap.unlink(missing_ok=True)
        swap.symlink_to(destination, target_is_directory=True)
        os.replace(swap, link)
    return folder


@dataclass
class AppSession:
    """A running App: its FiftyOne session, where to open it, and what it shows."""

    session: fo.Session
    url: str
    dataset_name: str
    sample_count: int
    saved_views: list[str]
    view_name: str | None

    def close(self) -> None:
        # Closing the last session on a port stops FiftyOne's server subprocess and waits for it.
        self.session.close()


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def check_port_free(address: str, port: int) -> None:
    """Fail now, in one line, rather than let FiftyOne wait a minute for a port it cannot bind
    (or silently attach to another App already serving there)."""
    if not 1 <= port <= 65535:
        raise CvtriageError(f"--port {port}: expected a port number 1..65535")
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        raise CvtriageError(f"--address {address}: not a valid address or host name") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The App's server sets SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CvtriageError(
                    f"port {port} on {address} is already in use (another App or server?): choose another with --port"
                ) from None
            if error.errno == errno.EACCES:
                raise CvtriageError(f"port {port}: permission denied (ports below 1024 need root): use --port 5151") from None
            raise CvtriageError(f"--address {address}: cannot serve there ({error.strerror})") from None


@contextmanager
def _quiet_session_logs():
    # FiftyOne logs a banner and ssh port-forwarding advice at INFO; the CLI says it shorter.
    loggers = [logging.getLogger(name) for name in _SESSION_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def launch_review_app(
    dataset: fo.Dataset,
    port: int = DEFAULT_PORT,
    address: str = LOOPBACK,
    view_name: str | None = None,
    on_start: Callable[[], None] | None = None,
) -> AppSession:
    """Serve the App on address:port with `dataset` loaded (and saved view `view_name` open).
    `on_start` is called once the request has passed its checks, before the App starts (which
    takes seconds), so a bad request is its error line alone.

    Returns once the server listens; the caller keeps the process alive and calls close().
    """
    saved_views = dataset.list_saved_views()
    if view_name is not None and view_name not in saved_views:
        known = ", ".join(saved_views) if saved_views else "none"
        raise CvtriageError(f"dataset '{dataset.name}' has no saved view '{view_name}' (saved views: {known})")
    check_port_free(address, port)
    if REVIEW_QUEUE_VIEW in saved_views:
        # Decisions tagged with the App's tag menu since the queue was last made leave it now.
        refresh_review_queues(dataset)
    view = dataset.load_saved_view(view_name) if view_name is not None else None
    if on_start is not None:
        on_start()
    register_review_plugin()
    try:
        with _quiet_session_logs():
            # remote=True: serve only; a server has no browser to open (the CLI prints the URL).
            session = fo.launch_app(dataset, view=view, port=port, address=address, remote=True)
    except fos.ServiceListenTimeout:
        raise CvtriageError(f"the FiftyOne App could not listen on {address}:{port}") from None
    return AppSession(
        session=session,
        url=session.url,
        dataset_name=dataset.name,
        sample_count=len(dataset),
        saved_views=saved_views,
        view_name=view_name,
    )


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def serve_until_interrupted(app_session: AppSession) -> None:
    """Keep the App running until Ctrl-C (or SIGTERM), then stop its server cleanly."""
    if threading.current_thread() is threading.main_thread():
        # A parent that ignores SIGINT (nohup, some CI runners) would otherwise make Ctrl-C a no-op.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        app_session.session.wait(-1)  # negative: keep serving even when no browser tab is open
    except KeyboardInterrupt:
        pass
    finally:
        app_session.close()
