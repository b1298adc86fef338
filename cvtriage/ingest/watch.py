"""`cvtriage watch DIR`: images and their same-name JSON sidecars, paired as they arrive, each
pair processed exactly once whatever the order and delay of its halves, across restarts and kill -9.

How a file gets in:
1. noticed: an OS file event (the `watchdog` library: inotify, FSEvents, ...), or the full rescan
   run every `rescan_seconds`, which catches what the OS dropped (overflowing event queues,
   network mounts that send none); files named like a download still in progress are never
   touched (`in_progress`);
2. settled: read only once its size and modification time have not changed for
   `settle_seconds`, or at once after the OS said its writer closed it;
3. recorded in the ledger (cvtriage.ingest.ledger) as one half of its pair: an image (any suffix
   the scan reads) or a `.json` sidecar, paired by name; anything else goes to quarantine;
4. a complete pair is processed (cvtriage.ingest.pairs): both halves checked, the detector run,
   one FiftyOne sample, one pairs.csv row; a bad pair goes to OUT/quarantine/ with its reason.
A half alone for longer than `pair_timeout` is reported (lone_halves.csv), never deleted.
Input files stay where they are; only bad ones move, to quarantine.
"""

from __future__ import annotations

import csv
import fcntl
import fnmatch
import io
import logging
import os
import queue
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cvtriage.config import IngestConfig, ScanConfig
from cvtriage.errors import CvtriageError
from cvtriage.files import fault_point, write_text_atomic
from cvtriage.image_files import IMAGE_SUFFIXES
from cvtriage.ingest.ledger import IMAGE, SIDECAR, Ledger, Move, Pair
from cvtriage.ingest.pairs import PairProcessor
from cvtriage.telemetry.sidecar import SIDECAR_SUFFIX

LEDGER_FILE = "ledger.sqlite"
LOCK_FILE = "watch.lock"
QUARANTINE_DIR = "quarantine"
QUARANTINE_REASONS = "reasons.csv"
LONE_HALVES_CSV = "lone_halves.csv"

logger = logging.getLogger(__name__)


@dataclass
class WatchSummary:
    processed: int = 0  # this run
    flagged: int = 0
    quarantined_files: int = 0
    lone_reported: int = 0
    redelivered: int = 0
    csv_rows_recovered: int = 0
    elapsed_s: float = 0.0
    totals: dict = field(default_factory=dict)  # the ledger's counts at the end (every run)


@dataclass
class _Settling:
    stamp: tuple[int, int]  # (size, mtime_ns)
    since: float  # monotonic time this stamp was first seen
    closed_stamp: tuple[int, int] | None = None  # the stamp when the OS reported close-after-write
    looks: int = 1


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return stat.st_size, stat.st_mtime_ns


class _WatchLock:
    """One watcher per OUT: an exclusive flock on OUT/watch.lock holding the owner's pid. The OS
    drops the lock when its process dies, however it dies, so a killed watcher never blocks the next."""

    def __init__(self, out: Path):
        self.path = out / LOCK_FILE
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise CvtriageError(f"{out}: another watcher (pid {owner}) is using this folder; stop it or use another --out") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()

    def release(self) -> None:
        self.handle.close()


def check_folders(folder: Path, out: Path) -> tuple[Path, Path]:
    """The watched folder and OUT, resolved; a one-line error for what cannot work."""
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not folder.exists():
        raise CvtriageError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise CvtriageError(f"{folder}: not a folder")
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise CvtriageError(f"{folder}: not readable and writable by this user (bad files are moved out of it)")
    if out == folder or folder in out.parents:
        raise CvtriageError(f"{out}: inside the watched folder {folder}; put --out elsewhere")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CvtriageError(f"{out}: cannot create the results folder ({error.strerror})") from None
    if not os.access(out, os.W_OK):
        raise CvtriageError(f"{out}: not writable by this user")
    return folder, out


class Watcher:
    def __init__(self, folder: Path, scan: ScanConfig, settings: IngestConfig, model=None):
        self.folder, self.out = check_folders(folder, Path(settings.out))
        self.settings = settings
        self.lock = _WatchLock(self.out)
        try:
            self.ledger = Ledger(self.out / LEDGER_FILE)
            self.ledger.bind_folder(self.folder)
            self.quarantine = self.out / QUARANTINE_DIR
            self.quarantine.mkdir(exist_ok=True)
            self.summary = WatchSummary()
            self._finish_moves(self.ledger.unfinished_moves())  # those a kill interrupted
            self.processor = PairProcessor(self.folder, self.out, scan, settings, model)
            self.summary.csv_rows_recovered = self.processor.reconcile_csv(self.ledger.processed_rows())
        except BaseException:
            self.lock.release()
            raise
        self.events: queue.Queue = queue.Queue()
        self.settling: dict[str, _Settling] = {}
        self.recorded: dict[str, tuple[int, int]] = {}  # name -> stamp already given to the ledger
        self.lone_changed = True

    # -- noticing and settling -----------------------------------------------------------------

    def _in_progress(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.settings.in_progress)

    def notice(self, name: str, closed: bool = False) -> None:
        """A file may be new or changed: follow it until it settles."""
        if self._in_progress(name):
            return
        stamp = _stamp(self.folder / name)
        if stamp is None:
            self.settling.pop(name, None)
            return
        if name not in self.settling and self.recorded.get(name) == stamp:
            return  # recorded as it is
        now = time.monotonic()
        current = self.settling.get(name)
        if current is None or current.stamp != stamp:
            current = self.settling[name] = _Settling(stamp, now)
        if closed:
            current.closed_stamp = stamp

    def rescan(self) -> None:
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=True):
                    self.notice(entry.name)

    def _settled(self) -> list[str]:
        """Files whose stamp has held for settle_seconds (or since their writer closed them). A
        file found already old (its modification time settle_seconds back, unchanged at a second
        look) needs no waiting: a restart or `--once` takes what lay there at once."""
        now, wall = time.monotonic(), time.time()
        ready = []
        for name, state in list(self.settling.items()):
            stamp = _stamp(self.folder / name)
            if stamp is None:
                del self.settling[name]
            elif stamp != state.stamp:
                self.settling[name] = _Settling(stamp, now)
            else:
                state.looks += 1
                old = state.looks >= 2 and wall - stamp[1] / 1e9 >= self.settings.settle_seconds
                if old or now - state.since >= self.settings.settle_seconds or state.closed_stamp == stamp:
                    ready.append(name)
                    del self.settling[name]
        return ready

    def _drain_events(self, wait_s: float) -> None:
        try:
            item = self.events.get(timeout=wait_s)
        except queue.Empty:
            return
        while True:
            self.notice(*item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return

    # -- recording -----------------------------------------------------------------------------

    def record(self, name: str) -> None:
        path = self.folder / name
        stamp = _stamp(path)
        if stamp is None:
            return
        if self.ledger.pending_move_of(path):
            return  # on its way to quarantine
        suffix = path.suffix.lower()
        kind = IMAGE if suffix in IMAGE_SUFFIXES else SIDECAR if suffix == SIDECAR_SUFFIX else None
        if kind is None or not path.stem:
            self._quarantine(name, [path], f"{name}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a {SIDECAR_SUFFIX} sidecar", False)
            return
        # Arrived when written (its modification time), not when this watcher first looked: a half
        # lying there since before a restart or a cron run is as old as it is.
        arrived = min(time.time(), stamp[1] / 1e9)
        outcome = self.ledger.arrive(path.stem, kind, name, f"{stamp[0]}:{stamp[1]}", arrived)
        self.recorded[name] = stamp
        if outcome == "conflict":
            known = self.ledger.pair(path.stem)
            self._quarantine(name, [path], f"{name}: a second image for {path.stem} (the pair already has {known.image})", False)
        elif outcome == "redelivered":
            self.summary.redelivered += 1
        elif outcome in ("waiting", "ready"):
            self.lone_changed = True

    # -- quarantine ----------------------------------------------------------------------------

    def _destination(self, original: Path) -> Path:
        candidate, number = self.quarantine / original.name, 1
        while candidate.exists() or self.ledger.destination_taken(candidate):
            number += 1
            candidate = self.quarantine / f"{original.stem}~{number}{original.suffix}"
        return candidate

    def _quarantine(self, name: str, files: list[Path], reason: str, is_pair: bool) -> None:
        plan = [(path, self._destination(path)) for path in files]
        moves = self.ledger.plan_quarantine(name, plan, reason, is_pair)
        fault_point("watch-quarantine-planned")  # the moves recorded, no file moved yet
        self._finish_moves(moves)
        for move in moves:
            self.recorded.pop(Path(move.original).name, None)
        moved = ", ".join(str(Path(move.destination).relative_to(self.out)) for move in moves)
        logger.warning(f"{reason} -> {moved}")
        self.summary.quarantined_files += len(moves)
        self.lone_changed = True

    def _finish_moves(self, moves: list[Move]) -> None:
        for move in moves:
            original, destination = Path(move.original), Path(move.destination)
            if original.exists():
                # shutil.move copies then deletes across file systems: a kill in between leaves
                # both copies, and this runs again at the next start.
                shutil.move(original, destination)
            self.ledger.move_done(move.id)
        if moves:
            self._write_reasons()

    def _write_reasons(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["file", "quarantined_as", "reason", "at"])
        for move in self.ledger.quarantined_files():
            at = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(move.at))
            writer.writerow([Path(move.original).name, Path(move.destination).name, move.reason, at])
        write_text_atomic(self.quarantine / QUARANTINE_REASONS, buffer.getvalue())

    # -- processing and reporting --------------------------------------------------------------

    def process_ready(self, stop: threading.Event) -> None:
        while not stop.is_set():  # a stop request ends the work after the batch at hand
            pairs = self.ledger.ready(self.settings.batch_pairs)
            if not pairs:
                return
            outcome = self.processor.process(pairs)
            fault_point("watch-stored")  # FiftyOne holds the samples; the ledger does not know yet
            for pair, reason in outcome.bad:
                files = [self.folder / pair.image, self.folder / pair.sidecar]
                self._quarantine(pair.name, [path for path in files if path.exists()], reason, True)
            for pair, kind in outcome.changed:
                self.ledger.forget_half(pair.name, kind)
                fault_point("watch-half-forgotten")
                name = pair.image if kind == IMAGE else pair.sidecar
                self.recorded.pop(name, None)
                self.notice(name)  # settles again, then pairs again
            if outcome.processed:
                self.ledger.mark_processed(outcome.processed)
                self.processor.append_rows(list(outcome.processed.values()))
                self.summary.processed += len(outcome.processed)
                self.summary.flagged += outcome.flagged
                logger.info(
                    f"processed {len(outcome.processed)} pair{'s' if len(outcome.processed) != 1 else ''} "
                    f"({outcome.flagged} flagged); {self.summary.processed} this run"
                )
                self.lone_changed = True

    def report_lone_halves(self) -> None:
        lone = self.ledger.lone_halves(time.time() - self.settings.pair_timeout)
        fresh = [pair for pair in lone if not pair.reported]
        for pair in fresh:
            half, missing = (pair.image, "sidecar") if pair.image else (pair.sidecar, "image")
            waited = _duration(time.time() - pair.first_seen)
            logger.warning(f"{half}: no {missing} after {waited}; left in place ({LONE_HALVES_CSV})")
        if fresh:
            self.ledger.mark_reported([pair.name for pair in fresh])
            self.summary.lone_reported += len(fresh)
        if fresh or self.lone_changed:
            self._write_lone(lone)
            self.lone_changed = False

    def _write_lone(self, lone: list[Pair]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["name", "file", "missing", "waiting_since"])
        for pair in lone:
            since = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(pair.first_seen))
            writer.writerow([pair.name, pair.image or pair.sidecar, "sidecar" if pair.image else "image", since])
        write_text_atomic(self.out / LONE_HALVES_CSV, buffer.getvalue())

    # -- the loop ------------------------------------------------------------------------------

    def _observe(self):
        """Start the OS file-event observer; None (rescans only) where the OS gives no events."""
        from watchdog.events import FileClosedEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        events = self.events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
                    return
                path = getattr(event, "dest_path", "") or event.src_path
                events.put((os.path.basename(os.fsdecode(path)), isinstance(event, FileClosedEvent)))

        observer = Observer()
        try:
            observer.schedule(Handler(), str(self.folder), recursive=False)
            observer.start()
        except OSError as error:  # inotify watch limit reached, ...
            logger.warning(
                f"{self.folder}: no file events from the OS ({error}); rescanning every "
                f"{self.settings.rescan_seconds:g} s only"
            )
            return None
        return observer

    @staticmethod
    def _stop_on_signals(stop: threading.Event) -> dict:
        """Ctrl-C or SIGTERM: finish the batch at hand, then stop; a second Ctrl-C stops at once.
        (A KeyboardInterrupt raised inside a library call may be swallowed by it.) Only the main
        thread can take signals; returns the handlers to restore."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request(signum, frame) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            stop.set()

        return {number: signal.signal(number, request) for number in (signal.SIGINT, signal.SIGTERM)}

    def run(self, once: bool, stop: threading.Event | None = None) -> WatchSummary:
        started = time.monotonic()
        stop = stop or threading.Event()
        previous_handlers = self._stop_on_signals(stop)
        observer = None if once else self._observe()
        logger.info(f"Watching {self.folder} -> {self.out}" + (" (once)" if once else " (Ctrl-C stops)"))
        try:
            self.rescan()
            last_rescan = time.monotonic()
            while True:
                settled = self._settled()
                for name in settled:
                    self.record(name)
                if settled:
                    fault_point("watch-recorded")  # settled halves in the ledger, none processed yet
                self.process_ready(stop)
                self.report_lone_halves()
                if once and not self.settling:
                    break
                if stop.is_set():
                    break
                self._drain_events(self.settings.poll_seconds)
                if not once and time.monotonic() - last_rescan >= self.settings.rescan_seconds:
                    self.rescan()
                    last_rescan = time.monotonic()
        except KeyboardInterrupt:
            pass  # a watcher's normal way to stop: what is done is recorded
        finally:
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
            self.summary.elapsed_s = time.monotonic() - started
            self.summary.totals = self.ledger.counts()
            self.ledger.close()
            self.lock.release()
        return self.summary


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def watch_folder(
    folder: Path,
    scan: ScanConfig,
    settings: IngestConfig,
    once: bool = False,
    model=None,
    stop: threading.Event | None = None,
) -> WatchSummary:
    """Watch `folder` (until `stop` is set, Ctrl-C or SIGTERM; with `once`, until what is there is done).

    `model` is an already-loaded Ultralytics-compatible model; by default `scan.weights` is loaded.
    Notes (each batch processed) and warnings (quarantined files, lone halves) go to this
    module's logger.
    """
    return Watcher(folder, scan, settings, model).run(once, stop)
