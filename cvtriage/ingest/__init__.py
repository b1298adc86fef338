"""Ingest: frames that arrive with their telemetry.

`watch.py` pairs images with same-name JSON sidecars as they land in a folder and processes each
pair exactly once (state in `ledger.py`, processing in `pairs.py`); `sidecar.py` reads the JSON,
`srt.py` DJI's per-frame `.SRT` logs; `positions.py` puts positions on scan events and
`geomap.py` draws them. The core types are in `types.py`.
"""
