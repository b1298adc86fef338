"""CPU scans (and `cvtriage watch`) run an OpenVINO export of the .pt weights, made once and cached beside them.

On the CPU, OpenVINO runs a YOLO model about twice as fast as PyTorch where the CPU computes in
bfloat16 (AVX512_BF16 or AMX: OpenVINO's default there; scores then differ from PyTorch's by up
to ~0.02, boxes by a fraction of a pixel); elsewhere it runs in float32. The export keeps dynamic
input shapes, so Ultralytics letterboxes every input exactly as for the PyTorch weights (the scan
plans the same tiles and crops and sees the same pixels; a fixed-size export would pad every
frame to a square, ~1.5x the work), and one export serves every input size: the cache is keyed
by the weights' SHA-256 and the export recipe (the Ultralytics and OpenVINO versions), not by a size.

Where: <weights folder>/.cvtriage-exports/<stem>-<weights hash>-<recipe hash>_openvino_model/,
or under the user's cache folder ($XDG_CACHE_HOME or ~/.cache, then cvtriage/exports) when the
weights' folder is not writable. An export is made in a temporary folder and renamed into place
only when complete, with a marker naming the weights' hash and its files' sizes written last:
two scans exporting at once (Ray workers, a batch) or a killed export never leave a half export
that is used later, and a folder whose marker does not check out is rebuilt, not trusted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from cvtriage.config import ScanConfig
from cvtriage.errors import CvtriageError, first_line
from cvtriage.logs import quieted
from cvtriage.models import load_model, ready_to_predict
from cvtriage.paths import PACKAGE_DIR, user_cache_dir
from cvtriage.scan.backends.openvino import thread_share_config

logger = logging.getLogger(__name__)

EXPORTS_DIR = ".cvtriage-exports"
MARKER = "cvtriage-export.json"
SUFFIX = "_openvino_model"
# Set to 1, every scan runs the .pt weights with PyTorch, as `export: off` does (the test suite
# sets it: only the export's own tests make exports, and never beside the project's weights).
NO_EXPORT_ENV = "CVTRIAGE_NO_EXPORT"
# The export's example input; its shapes stay dynamic, so this fixes nothing about the scan.
TRACE_SIZE = 640
# Temporary folders of exports killed this long ago are removed by the next export there.
STALE_TMP_S = 3600


@functools.lru_cache(maxsize=1)
def openvino_version() -> str | None:
    """OpenVINO's version when the package imports, else None."""
    try:
        import openvino
    except Exception:  # not installed, or a broken install: scan with PyTorch
        return None
    return str(openvino.__version__)


def export_planned(settings: ScanConfig, device: str) -> bool:
    """Whether a scan under these settings on this device runs the weights' OpenVINO export:
    `export: auto`, the CPU, local .pt weights, and OpenVINO installed."""
    weights = Path(settings.weights)
    return (
        settings.export == "auto"
        and os.environ.get(NO_EXPORT_ENV) != "1"
        and device == "cpu"
        and weights.suffix == ".pt"
        and weights.is_file()
        and openvino_version() is not None
    )


def loaded_from(model, weights: str | Path) -> bool:
    """Whether an Ultralytics model was loaded from this weights file (not built otherwise)."""
    source = getattr(model, "ckpt_path", None)
    return bool(source) and Path(source).resolve() == Path(weights).resolve()


_digests: dict[tuple[str, int, int], str] = {}


def weights_digest(weights: Path) -> str:
    """SHA-256 of the weights file, computed once per process for each version of the file."""
    stat = weights.stat()
    key = (str(weights.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = hashlib.sha256(weights.read_bytes()).hexdigest()
    return _digests[key]


def export_recipe() -> str:
    import ultralytics

    return f"openvino {openvino_version()}, ultralytics {ultralytics.__version__}, fp32, dynamic shapes"


@functools.lru_cache(maxsize=1)
def backend_identity() -> str:
    """What a scan's detections depend on when it runs the export: the recipe and the precision
    this CPU computes in (a resumed scan must not mix bfloat16 and float32 detections)."""
    import openvino

    bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return f"{export_recipe()}, CPU {'bf16' if bf16 else 'f32'}"


def export_name(weights: Path, digest: str) -> str:
    recipe = hashlib.sha256(export_recipe().encode()).hexdigest()
    return f"{weights.stem}-{digest[:12]}-{recipe[:8]}{SUFFIX}"


def is_complete(folder: Path, digest: str) -> bool:
    """The export's marker names these weights and this recipe, and every file it lists is there
    at its size (a truncated or half-deleted folder does not pass)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return (
            marker.get("weights_sha256") == digest
            and marker.get("recipe") == export_recipe()
            and bool(marker.get("files"))
            and all((folder / name).stat().st_size == size for name, size in marker["files"].items())
        )
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def cached_export(weights: str | Path) -> Path:
    """The folder of the OpenVINO export of `weights` (a .pt file): found in the cache, or made
    now (a few seconds) and cached. Logs which, in one line (a note)."""
    weights = Path(weights)
    digest = weights_digest(weights)
    name = export_name(weights, digest)
    # Beside the weights, where a team's shared weights folder shares the export too; never inside
    # the installed package (the shipped demo model), which `pip uninstall` would leave behind.
    shipped = weights.resolve().is_relative_to(PACKAGE_DIR)
    user_exports = user_cache_dir() / "exports"
    places = [user_exports] if shipped else [weights.parent / EXPORTS_DIR, user_exports]
    for place in places:
        if is_complete(place / name, digest):
            logger.info("OpenVINO export of %s (cached in %s)", weights, place / name)
            return place / name
    reasons = []
    for place in places:
        try:
            place.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=place))
        except OSError as error:  # not writable: the next place
            reasons.append(f"{place}: {error.strerror or error}")
            continue
        logger.info("OpenVINO export of %s: exporting once to %s (--no-export: PyTorch)", weights, place / name)
        try:
            return _make_export(weights, digest, scratch, place / name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    raise CvtriageError(f"{weights}: nowhere to cache its OpenVINO export ({'; '.join(reasons)}); pass --no-export")


def _make_export(weights: Path, digest: str, scratch: Path, final: Path) -> Path:
    from ultralytics import YOLO

    # Export the very bytes that were hashed (the file may be replaced meanwhile), under the
    # export's own name: Ultralytics writes <stem>_openvino_model/ beside the file it exports.
    data = weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise CvtriageError(f"{weights}: the weights changed while the scan started; run it again")
    copy = scratch / f"{final.name.removesuffix(SUFFIX)}.pt"
    copy.write_bytes(data)
    try:
        with quieted("ultralytics", logging.ERROR), warnings.catch_warnings():  # it narrates an export at length
            warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notices
            exported = YOLO(str(copy), task="detect").export(format="openvino", imgsz=TRACE_SIZE, dynamic=True, batch=1)
    except Exception as error:  # Ultralytics and OpenVINO raise many types
        reason = first_line(error)
        raise CvtriageError(f"{weights}: OpenVINO export failed ({reason}); pass --no-export to use PyTorch") from None
    made = Path(exported)
    files = {path.name: path.stat().st_size for path in made.iterdir() if path.is_file()}
    marker = {"weights": str(weights.resolve()), "weights_sha256": digest, "recipe": export_recipe(), "files": files}
    (made / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    _publish(made, final, scratch, digest)
    if not is_complete(final, digest):
        raise CvtriageError(f"{final}: the OpenVINO export just made does not check out; pass --no-export")
    _prune(final.parent, weights.stem, keep=final.name, beside_weights=final.parent == weights.parent / EXPORTS_DIR)
    return final


def _publish(made: Path, final: Path, scratch: Path, digest: str) -> None:
    """Rename the complete export into place. A folder there that does not check out (a broken
    or older export) is moved aside first; one that another process just published wins."""
    if is_complete(final, digest):
        return  # another process published the same export meanwhile
    if final.exists():
        try:
            final.rename(scratch / "replaced")
        except OSError:
            pass  # another process moved it, or published into it: decided below
    try:
        made.rename(final)
    except OSError:
        if not final.is_dir():
            raise CvtriageError(f"{final}: cannot store the OpenVINO export there; pass --no-export") from None


def _prune(place: Path, stem: str, keep: str, beside_weights: bool) -> None:
    """Remove temporary folders of long-dead exports; beside the weights also exports of earlier
    versions of the same weights file (the user cache holds many folders' weights: left alone)."""
    pattern = re.compile(re.escape(stem) + r"-[0-9a-f]{12}-[0-9a-f]{8}" + re.escape(SUFFIX))
    for entry in place.iterdir():
        try:
            stale_tmp = entry.name.startswith(".tmp-") and time.time() - entry.stat().st_mtime > STALE_TMP_S
        except OSError:
            continue
        if stale_tmp or (beside_weights and entry.name != keep and pattern.fullmatch(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)


def model_to_run(settings: ScanConfig, device: str, model=None):
    """(The model a scan or a watch runs, its predictor set up; the export's folder or None): the
    weights' OpenVINO export where one is planned (export_planned), else `model` or the weights
    loaded. A `model` not loaded from `settings.weights` (a test's stand-in) runs as given."""
    model = model if model is not None else load_model(settings.weights)
    if export_planned(settings, device) and loaded_from(model, settings.weights):
        folder = cached_export(settings.weights)
        return load_export(str(folder), device), folder  # which sets its predictor up
    # The predictor first: asked for its class names before, an exported model (OpenVINO, ONNX)
    # would be compiled twice, once for a throwaway predictor; and it reads its input size then.
    ready_to_predict(model, settings.weights, settings.imgsz, device)
    return model, None


@functools.lru_cache(maxsize=4)
def load_export(folder: str, device: str):
    """The export as an Ultralytics model, its predictor set up (OpenVINO compiles it): once per
    process, so a batch's or a Ray worker's next video reuses it."""
    from ultralytics import YOLO

    model = YOLO(folder, task="detect")
    ready_to_predict(model, folder, TRACE_SIZE, device)
    _keep_thread_share(model, Path(folder))
    return model


def _keep_thread_share(model, folder: Path) -> None:
    """Compile the export again for a scheduler's share of the cores (thread_share_config), where
    one was given: Ultralytics compiled it for every core."""
    share = thread_share_config()
    backend = getattr(getattr(model.predictor, "model", None), "backend", None)
    if not share or not hasattr(backend, "compile_model"):
        return
    import openvino as ov

    network = ov.Core().read_model(str(next(folder.glob("*.xml"))))
    backend.ov_compiled_model = backend.compile_model(network, config={"PERFORMANCE_HINT": "LATENCY", **share})
