"""Settings: the YAML files shipped in this package (one per command: scan.yaml, train.yaml, ...),
then a user's --config file, then the command-line flags given, validated once.

Every stage receives an already-validated settings object, so no stage re-checks its inputs'
types or ranges.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from cvtriage.config.settings import (
    AuditConfig,
    BatchConfig,
    HarvestConfig,
    IngestConfig,
    PositionsConfig,
    ProposalsConfig,
    ScanConfig,
    SidecarKeys,
    StrictModel,
    TrainConfig,
)
from cvtriage.errors import CvtriageError
from cvtriage.paths import CONFIG_DIR, OLD_CONFIG_DIR

__all__ = [
    "AuditConfig", "BatchConfig", "HarvestConfig", "IngestConfig", "PositionsConfig", "ProposalsConfig", "ScanConfig",
    "SidecarKeys", "TrainConfig",
    "load_audit_config", "load_batch_config", "load_harvest_config", "load_ingest_config",
    "load_scan_config", "load_settings", "load_train_config",
]  # fmt: skip

# Until 0.2, the defaults were edited in the source checkout's configs/ folder, under these names.
# A checkout's file there is still read for this release, with a warning: over the shipped
# defaults (it was edited from them), under --config and the flags (they are newer).
OLD_NAMES = {
    "scan.yaml": "default.yaml", "train.yaml": "everyday.yaml", "watch.yaml": "ingest.yaml",
    "audit.yaml": "audit.yaml", "batch.yaml": "batch.yaml", "harvest.yaml": "harvest.yaml",
}  # fmt: skip

log = logging.getLogger(__name__)
_warned: set[Path] = set()


Settings = TypeVar("Settings", bound=StrictModel)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CvtriageError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise CvtriageError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise CvtriageError(f"{path}: expected a mapping of setting: value")
    return data


def _validate(model: type[Settings], data: dict[str, Any], source: str) -> Settings:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = error.errors()
        field = _field_path(errors[0]["loc"])
        # A setting of several kinds (a number or auto) fails once for each: say what each wanted.
        messages = [e["msg"].removeprefix("Value error, ") for e in errors if _field_path(e["loc"]) == field]
        raise CvtriageError(f"{source}: {field}: {'; or '.join(dict.fromkeys(messages))}") from None


def _field_path(loc: tuple) -> str:
    """A setting's name (a.b for a nested one), without the tags pydantic gives a union's kinds
    ('constrained-int', "literal['auto']")."""
    parts = []
    for part in loc:
        if isinstance(part, str) and not part.isidentifier():
            break
        parts.append(str(part))
    return ".".join(parts) or "settings"


def load_settings(
    model: type[Settings],
    default_file: str,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """The shipped defaults (<package>/config/<default_file>), then keys from --config, then the
    CLI flags that were given."""
    data = _read_yaml(CONFIG_DIR / default_file)
    source = str(CONFIG_DIR / default_file)
    old = _old_file(default_file)
    if old is not None:
        _overlay(data, _read_yaml(old))
        source = str(old)
    if config_file is not None:
        _overlay(data, _read_yaml(Path(config_file)))
        source = str(config_file)
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    # --every and --fps exclude each other: a flag for one clears the other from the files.
    if "every" in given:
        data["fps"] = None
    if "fps" in given:
        data["every"] = None
    data.update(given)
    return _validate(model, data, source if not given else f"{source} + command-line flags")


def load_scan_config(config_file: Path | None = None, **overrides: Any) -> ScanConfig:
    return load_settings(ScanConfig, "scan.yaml", config_file, overrides)


def load_train_config(config_file: Path | None = None, **overrides: Any) -> TrainConfig:
    return load_settings(TrainConfig, "train.yaml", config_file, overrides)


def load_harvest_config(config_file: Path | None = None, **overrides: Any) -> HarvestConfig:
    return load_settings(HarvestConfig, "harvest.yaml", config_file, overrides)


def load_batch_config(config_file: Path | None = None, **overrides: Any) -> BatchConfig:
    return load_settings(BatchConfig, "batch.yaml", config_file, overrides)


def load_audit_config(config_file: Path | None = None, **overrides: Any) -> AuditConfig:
    return load_settings(AuditConfig, "audit.yaml", config_file, overrides)


def load_ingest_config(config_file: Path | None = None, **overrides: Any) -> IngestConfig:
    return load_settings(IngestConfig, "watch.yaml", config_file, overrides)


def _old_file(default_file: str) -> Path | None:
    """The checkout's pre-0.2 copy of these defaults, if any; the warning once per process (a scan
    reads harvest.yaml for every video it stores)."""
    old = None if OLD_CONFIG_DIR is None else OLD_CONFIG_DIR / OLD_NAMES[default_file]
    if old is None or not old.is_file():
        return None
    if old not in _warned:
        _warned.add(old)
        flag = "--batch-config" if default_file == "batch.yaml" else "--config"
        advice = f"keep your changes in a file of your own and pass it with {flag}"
        log.warning(f"{old} is read for this release only: the defaults now ship inside cvtriage; {advice}")
    return old


def _overlay(data: dict[str, Any], file_data: dict[str, Any]) -> None:
    for key, value in file_data.items():
        # A file that sets some keys of a section (augment) keeps the section's other keys.
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            value = {**data[key], **value}
        data[key] = value
