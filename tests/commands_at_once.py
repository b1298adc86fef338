"""Commands started at the same moment on a cold FiftyOne database (a FIFTYONE_DATABASE_DIR of
their own, no mongod running), for tests/test_concurrency.py and benchmarks/concurrent_commands.py.

FiftyOne joins any database service its OS user runs, whatever that service's database folder
(see conftest.py), so a fresh folder is a cold start only where no other service runs. Where the
OS allows it (`unshare`: root, or unprivileged user namespaces), the commands run in a PID
namespace of their own, where FiftyOne sees no other process; elsewhere they run as they are, and
`cold` says whether another service was running. Either way the mongod they started is stopped
at the end.

A plan is a list of steps, run in order:
- {"together": [argv, ...]}: start every command at once, wait for all of them;
- {"serve": argv, "ready": "http://"}: start it, wait for a line of its stdout starting with
  `ready`, and keep it running to the end of the plan, when it gets Ctrl-C (SIGINT).
Run as a script (`python commands_at_once.py PLAN.json RESULT.json`), it carries out the plan.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SERVICE_ARGS = ["--51-service", "db"]  # FiftyOne's database service (fiftyone/service/main.py)


@dataclass
class Outcome:
    argv: list[str]
    code: int | None  # None: still running at the timeout (then killed)
    stdout: str
    stderr: str
    seconds: float

    def label(self) -> str:
        command = self.argv[3:5] if self.argv[1:3] == ["-m", "cvtriage.cli"] else ["(a Python script)"]
        return "cvtriage " + " ".join(Path(word).name for word in command)


@dataclass
class PlanResult:
    cold: bool  # no other FiftyOne database service of this user was running at the start
    isolated: bool  # in a PID namespace of its own
    steps: list[list[Outcome]]  # per step: one outcome per command (a served one: at the end)
    seconds: float

    def failures(self) -> list[str]:
        """One line per command that did not exit 0 or printed a traceback."""
        return [
            f"{outcome.label()}: exit {outcome.code}: {(outcome.stderr.strip().splitlines() or [''])[-1][:300]}"
            for step in self.steps
            for outcome in step
            if outcome.code != 0 or "Traceback" in outcome.stderr + outcome.stdout
        ]


def cvtriage(*args: str) -> list[str]:
    return [sys.executable, "-m", "cvtriage.cli", *map(str, args)]


# Each dataset's scan events as (source video, event id, class); then anything else asked for.
READ = """
import json, sys, urllib.request
import fiftyone as fo
found = {}
for name in sys.argv[1].split(","):
    dataset = fo.load_dataset(name)
    fields = dataset.get_field_schema()
    found[name] = {"samples": len(dataset),
                   "events": sorted(zip(dataset.values("source_video"), dataset.values("event_id"), dataset.values("class_name")))
                   if "event_id" in fields else [],
                   "pairs": sorted(dataset.values("pair_name")) if "pair_name" in fields else []}
if len(sys.argv) > 2:  # the App's server: how many samples it sees in the first dataset
    query = '{ dataset(name: "%s") { estimatedSampleCount } }' % sys.argv[1].split(",")[0]
    request = urllib.request.Request(sys.argv[2] + "graphql", json.dumps({"query": query}).encode(),
                                     {"content-type": "application/json"})
    found["app"] = json.load(urllib.request.urlopen(request, timeout=60))["data"]["dataset"]["estimatedSampleCount"]
print(json.dumps(found))
"""


def read_datasets(names: list[str], app_url: str | None = None) -> list[str]:
    return [sys.executable, "-c", READ, ",".join(names), *([app_url] if app_url else [])]


def scan_command(video: Path, out: Path, dataset: str) -> list[str]:
    from cvtriage.paths import DEMO_WEIGHTS

    # 320 px, no tiles: a few frames a second on a loaded CPU; the demo model still finds the objects.
    return cvtriage("scan", video, "--weights", DEMO_WEIGHTS, "--imgsz", "320", "--tile", "off", "--device", "cpu",
                    "--out", out, "--dataset", dataset)  # fmt: skip


def make_flyovers(folder: Path) -> list[Path]:
    """Two 3 s synthetic flyovers, with two objects each that the demo model finds at 320 px."""
    from cvtriage.synth.video import FlyoverSpec, generate_video

    videos = [folder / f"flyover-{seed}.mp4" for seed in (4, 5)]
    for seed, video in zip((4, 5), videos):
        generate_video(video, FlyoverSpec(seconds=3, seed=seed, width=640, height=360))
    return videos


def scan_alone(video: Path, out: Path) -> list[dict]:
    """The events of scan_command's scan run in this process, alone, without FiftyOne."""
    from cvtriage.config import load_scan_config
    from cvtriage.paths import DEMO_WEIGHTS
    from cvtriage.scan.pipeline import run_scan

    settings = load_scan_config(weights=str(DEMO_WEIGHTS), imgsz=320, tile="off", device="cpu", out=str(out))
    settings.dataset = None
    return events_of(run_scan(video, settings).out_dir)


def events_of(results: Path) -> list[dict]:
    return json.loads((results / "events.json").read_text())["events"]


def stored_events(video: Path, results: Path) -> list[list]:
    """What a dataset holds for a scan of `video` whose results folder is `results`."""
    return sorted([str(video.resolve()), event["id"], event["class"]] for event in events_of(results))


def cold_environment(database_dir: Path) -> dict[str, str]:
    """This environment with FiftyOne's database in `database_dir` and no port inherited from a
    process already connected (which would skip FiftyOne's start-up altogether)."""
    env = {key: value for key, value in os.environ.items() if key not in ("FIFTYONE_PRIVATE_DATABASE_PORT", "FIFTYONE_DATABASE_URI")}
    env["FIFTYONE_DATABASE_DIR"] = str(database_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(TESTS), os.environ.get("PYTHONPATH")]))
    return env


@functools.cache
def namespace_prefix() -> list[str]:
    """`unshare` into a new PID namespace, where this OS allows it; else nothing."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    # --kill-child: a test that times out and kills unshare ends the namespace, and all in it.
    prefix = [unshare, "--pid", "--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        prefix.insert(1, "--map-root-user")
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else []


def cold_start_possible() -> bool:
    """In a PID namespace of its own, or with no FiftyOne database service of this user running."""
    return bool(namespace_prefix()) or not _database_services()


def run_plan(plan: list[dict], database_dir: Path, work: Path, timeout_s: float = 600.0) -> PlanResult:
    """Carry out `plan` on a cold database in `database_dir` (in a PID namespace where possible)."""
    work.mkdir(parents=True, exist_ok=True)
    plan_path, result_path = work / "plan.json", work / "result.json"
    plan_path.write_text(json.dumps(plan))
    env = cold_environment(database_dir)
    prefix = namespace_prefix()
    command = [*prefix, sys.executable, __file__, str(plan_path), str(result_path), str(timeout_s)]
    subprocess.run(command, env=env, cwd=work, timeout=timeout_s + 120, check=True)
    found = json.loads(result_path.read_text())
    steps = [[Outcome(**outcome) for outcome in step] for step in found["steps"]]
    return PlanResult(found["cold"], bool(prefix), steps, found["seconds"])


def _database_services() -> list:
    import psutil

    services = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(cmdline[i : i + len(SERVICE_ARGS)] == SERVICE_ARGS for i in range(len(cmdline))):
            services.append(process)
    return services


def stop_mongod(database_dir: Path) -> None:
    """Stop the mongod serving `database_dir` (FiftyOne's service ends with it)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "--dbpath" in cmdline and Path(cmdline[cmdline.index("--dbpath") + 1]) == database_dir:
            process.terminate()
            try:
                process.wait(60)
            except psutil.TimeoutExpired:
                process.kill()


class _Running:
    def __init__(self, argv: list[str]):
        self.argv = argv
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.stdout, True), daemon=True).start()
        self.reading_stderr = threading.Thread(target=self._read, args=(self.process.stderr, self.stderr, False), daemon=True)
        self.reading_stderr.start()

    def _read(self, stream, into: list[str], forward: bool) -> None:
        for line in stream:
            into.append(line)
            if forward:
                self.lines.put(line)

    def wait_for_line(self, start: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.lines.get(timeout=0.5).startswith(start):
                    return True
            except queue.Empty:
                if self.process.poll() is not None:
                    return False
        return False

    def finish(self, deadline: float) -> Outcome:
        try:
            self.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reading_stderr.join(10)
        code = self.process.returncode if self.process.returncode != -signal.SIGKILL else None
        return Outcome(self.argv, code, "".join(self.stdout), "".join(self.stderr), round(time.monotonic() - self.started, 2))


def _carry_out(plan: list[dict], timeout_s: float) -> dict:
    started = time.monotonic()
    deadline = started + timeout_s
    cold = not _database_services()
    steps: list[list[Outcome]] = []
    served: list[tuple[int, _Running]] = []
    try:
        for step in plan:
            if "serve" in step:
                running = _Running(step["serve"])
                served.append((len(steps), running))
                steps.append([])
                if not running.wait_for_line(step["ready"], max(deadline - time.monotonic(), 1)):
                    break
            else:
                group = [_Running(argv) for argv in step["together"]]
                steps.append([running.finish(deadline) for running in group])
    finally:
        for index, running in served:
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGINT)
            steps[index] = [running.finish(time.monotonic() + 60)]
        stop_mongod(Path(os.environ["FIFTYONE_DATABASE_DIR"]))
    return {"cold": cold, "steps": [[asdict(outcome) for outcome in step] for step in steps],
            "seconds": round(time.monotonic() - started, 2)}  # fmt: skip


if __name__ == "__main__":
    plan_file, result_file, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    Path(result_file).write_text(json.dumps(_carry_out(json.loads(Path(plan_file).read_text()), timeout)))
