"""DJI `.SRT` flight logs: the drone's position for every subtitle (every frame, or every second).

DJI drones write a subtitle file beside each video holding its telemetry. The format differs by
model and firmware; every quirk is handled here and nowhere else:
- bracketed fields (Air 2S, Mavic 3, Mavic Air 2, Mavic 2): `[latitude: 41.4247] [longitude: 2.2341]
  [altitude: 117.0]`, or `[rel_alt: -2.4 abs_alt: 0.4]`; some firmware spells `longtitude`; a
  `FrameCnt`/`SrtCnt` counter and a date-time line (`2022-08-07 13:40:40,774,808`: ms, us);
- `F/5.6, SS 400, ... GPS (lon, lat, n), ... H 85.80m, ... F.PRY (pitch, roll, yaw)` (Phantom 4
  Pro/RTK, Mavic Mini): longitude first; `n` is the satellite count (15/16 in flight, 3 before a
  fix), not an altitude; `H` is the height above take-off;
- `GPS(a,b,n) BAROMETER:x` or `Hb:x` lines: longitude first on the Mavic Pro and older firmware
  (`GPS(149.0251,-20.2533,16)`, Australia), again with the satellite count; the Matrice 300 writes
  latitude first and an altitude with its unit (`GPS(36.6146,-6.1120,0.0M)`, Spain), and the unit
  is what tells the two apart; `GPS(N/A,N/A,3)` before a fix;
- the camera, where a log has it: enterprise firmware's `[gb_yaw: 45.0 gb_pitch: -90.0 gb_roll:
  0.0]` and `[drone_yaw: ...]`, the Phantom 4's `G.PRY (pitch, roll, yaw)`, and `[focal_len: 24.00]`,
  the 35 mm-equivalent focal length (written times ten, `240`, by the Air 2 and Air 2S);
- older Mavic 2 firmware writes no `-->` time codes: a counter line, a date-time line and the
  fields, one block a second. Those blocks are timed by their date-times against the video's start
  (its container's creation time where that falls inside the log, else the first block's).
Problems of single subtitles (cut off, no fix, going back in time) are warnings naming the line;
a file with no usable position at all is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cvtriage.errors import CvtriageError
from cvtriage.telemetry.types import Position

SUBTITLE_TIME = re.compile(r"(\d+):(\d\d):(\d\d)[,.](\d{1,3})\s*-->\s*(\d+):(\d\d):(\d\d)[,.](\d{1,3})")
MARKUP = re.compile(r"<[^>]*>")
NUMBER = r"[-+]?\d+(?:\.\d+)?"
BRACKET = re.compile(r"\[([^\]]*)\]")
BRACKET_FIELD = re.compile(rf"([A-Za-z_]+)\s*:\s*({NUMBER})")
GPS_TRIPLE = re.compile(r"GPS\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)")
HEIGHT = re.compile(rf"(?:\bH\s+({NUMBER})m\b|BAROMETER:\s*({NUMBER})|\bHb:\s*({NUMBER}))")
FLIGHT_YAW = re.compile(rf"F\.PRY\s*\(\s*{NUMBER}\W*,\s*{NUMBER}\W*,\s*({NUMBER})")
GIMBAL_PRY = re.compile(rf"G\.PRY\s*\(\s*({NUMBER})\W*,\s*({NUMBER})\W*,\s*({NUMBER})")
COUNTER_LINE = re.compile(r"^\d+$")
COUNTER = re.compile(r"(?:FrameCnt|SrtCnt)\s*:\s*(\d+)")
CLOCK = re.compile(r"(\d{4})[-.](\d{1,2})[-.](\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,3}))?(?:,(\d{1,3}))?")
NO_FIX = {"N/A", "NA", "n/a"}


@dataclass(frozen=True)
class SrtRecord:
    """One subtitle: a span of video time and what the drone logged for it."""

    line: int  # 1-based line of its time line (or, without time lines, of its date-time) in the file
    start_s: float
    end_s: float
    counter: int | None  # the file's own frame counter, when it writes one
    position: Position | None
    clock: datetime | None = None  # the drone's own date-time for the subtitle, when it writes one


@dataclass
class SrtLog:
    path: Path
    records: list[SrtRecord]  # in time order
    warnings: list[str] = field(default_factory=list)
    timed_by_clock: bool = False  # no `-->` time codes: timed by the blocks' date-times

    @property
    def positioned(self) -> list[SrtRecord]:
        return [record for record in self.records if record.position is not None]

    @property
    def interval_s(self) -> float:
        """The log's usual spacing between subtitles (the median)."""
        spans = sorted(record.end_s - record.start_s for record in self.positioned if record.end_s > record.start_s)
        return spans[len(spans) // 2] if spans else 1.0


class _Problems:
    """Warnings of one kind are collected into one line: the count and the first line."""

    def __init__(self, path: Path):
        self.path = path
        self.seen: dict[str, list[int]] = {}

    def add(self, kind: str, line: int) -> None:
        self.seen.setdefault(kind, []).append(line)

    def lines(self) -> list[str]:
        out = []
        for kind, lines in self.seen.items():
            more = f" (and {len(lines) - 1} more subtitles)" if len(lines) > 1 else ""
            out.append(f"{self.path}: line {lines[0]}: {kind}{more}")
        return out


def _seconds(hours: str, minutes: str, seconds: str, millis: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _clock(text: str) -> datetime | None:
    match = CLOCK.search(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, first, second_part = match.groups()
    # DJI's `13:40:40,774,808` is milliseconds then microseconds; `12:27:52.373` milliseconds.
    micro = int((first or "0").ljust(3, "0")) * 1000 + int((second_part or "0").ljust(3, "0"))
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    except ValueError:  # a garbled date (month 13): no clock rather than no subtitle
        return None


def _clock_text(clock: datetime | None) -> str | None:
    return clock.strftime("%Y-%m-%dT%H:%M:%S.%f") if clock is not None else None


def _focal_35mm(text: str) -> float:
    """`focal_len`: the 35 mm-equivalent focal length; the Air 2 and Air 2S write it times ten (`240`)."""
    value = float(text)
    return value / 10 if "." not in text and value >= 100 else value


def _number(text: str) -> float | None:
    try:
        return float(text.removesuffix("M"))
    except ValueError:
        return None


def _position(text: str, line: int, problems: _Problems) -> Position | None:
    """The position in one subtitle's text (markup removed), or None with the reason recorded."""
    latitude = longitude = altitude = height = None
    fields: dict[str, float] = {}
    raw: dict[str, str] = {}
    for bracket in BRACKET.findall(text):
        for key, value in BRACKET_FIELD.findall(bracket):  # the text tells `240` from `24.00`
            fields[key.lower()], raw[key.lower()] = float(value), value
    if "latitude" in fields:
        latitude = fields["latitude"]
        longitude = fields.get("longitude", fields.get("longtitude"))
        altitude = fields.get("abs_alt", fields.get("altitude"))
        height = fields.get("rel_alt")
    elif (triple := GPS_TRIPLE.search(text)) is not None:
        first, second, third = triple.groups()
        if first in NO_FIX or second in NO_FIX:
            problems.add("no GPS fix (N/A)", line)
            return None
        a, b = _number(first), _number(second)
        if a is None or b is None:
            problems.add(f"unreadable GPS({first},{second},{third})", line)
            return None
        # The Matrice 300 writes latitude first, and is the one format with a unit on the altitude;
        # the others write longitude first and a satellite count.
        with_unit = third.endswith("M")
        latitude, longitude = (a, b) if with_unit else (b, a)
        altitude = _number(third) if with_unit else None
        heights = HEIGHT.search(text)
        height = next((float(value) for value in heights.groups() if value is not None), None) if heights else None
    if latitude is None or longitude is None:
        problems.add("no position (subtitle cut off?)", line)
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        problems.add(f"position out of range (latitude {latitude}, longitude {longitude})", line)
        return None
    if latitude == 0 and longitude == 0:
        problems.add("no GPS fix (0, 0)", line)
        return None
    yaw = FLIGHT_YAW.search(text)
    heading = float(yaw.group(1)) % 360 if yaw else fields.get("drone_yaw")
    gimbal = GIMBAL_PRY.search(text)
    pitch, roll, gimbal_yaw = (float(value) for value in gimbal.groups()) if gimbal else (
        fields.get("gb_pitch"), fields.get("gb_roll"), fields.get("gb_yaw"))  # fmt: skip
    return Position(
        latitude, longitude, altitude, height, heading % 360 if heading is not None else None, _clock_text(_clock(text)),
        gimbal_pitch=pitch, gimbal_yaw=gimbal_yaw % 360 if gimbal_yaw is not None else None, gimbal_roll=roll,
        focal_35mm=_focal_35mm(raw["focal_len"]) if "focal_len" in raw else None,
    )  # fmt: skip


def parse_srt(path: Path, video_start: datetime | None = None) -> SrtLog:
    """Every subtitle of a DJI SRT file, in time order. Raises CvtriageError when the file holds no
    subtitle or no position at all; problems of single subtitles are in `warnings`. `video_start`
    (the video's creation time, naive, as the drone's clock reads) times the blocks of a file
    without `-->` time codes."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as error:
        raise CvtriageError(f"{path}: cannot read ({error.strerror})") from None
    if not text.strip():
        raise CvtriageError(f"{path}: empty SRT file")
    problems = _Problems(path)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[list[tuple[int, str]]] = []
    block: list[tuple[int, str]] = []
    for number, raw in enumerate([*lines, ""], start=1):
        if raw.strip():
            block.append((number, raw.strip()))
        elif block:
            blocks.append(block)
            block = []
    timed_by_clock = not any(SUBTITLE_TIME.search(line) for block in blocks for _, line in block[:2])
    found = _clock_records(blocks, problems, video_start) if timed_by_clock else [_record(b, problems) for b in blocks]
    records: list[SrtRecord] = []
    for record in found:
        if record is None:
            continue
        if records and record.start_s < records[-1].start_s:
            problems.add("goes back in time; left out", record.line)
        else:
            records.append(record)
    if not records:
        raise CvtriageError(f"{path}: no subtitle with a time line (not a DJI SRT file?)")
    if not any(record.position is not None for record in records):
        raise CvtriageError(f"{path}: none of its {len(records)} subtitles holds a GPS position (this drone logs none)")
    return SrtLog(path, records, problems.lines(), timed_by_clock)


def _record(block: list[tuple[int, str]], problems: _Problems) -> SrtRecord | None:
    for offset, (number, line) in enumerate(block[:2]):
        match = SUBTITLE_TIME.search(line)
        if match is not None:
            start, end = _seconds(*match.groups()[:4]), _seconds(*match.groups()[4:])
            body = MARKUP.sub(" ", " ".join(text for _, text in block[offset + 1 :]))
            counter = COUNTER.search(body)
            return SrtRecord(
                number, start, end, int(counter.group(1)) if counter else None, _position(body, number, problems),
                _clock(body),
            )  # fmt: skip
    problems.add("not a subtitle (no time line); left out", block[0][0])
    return None


def _clock_records(
    blocks: list[list[tuple[int, str]]], problems: _Problems, video_start: datetime | None
) -> list[SrtRecord | None]:
    """Blocks without time codes (older Mavic 2 firmware): a counter line, a date-time line and the
    fields. Each is timed by its date-time, from the video's start when that falls inside the log
    (a recording started mid-log), else from the first block's; it lasts until the next one."""
    dated: list[tuple[int, datetime, str, int | None]] = []
    for block in blocks:
        head = [text for _, text in block[:2]]
        clock = _clock(head[-1]) if len(head) == 2 and COUNTER_LINE.match(head[0]) else None
        if clock is None:
            problems.add("not a subtitle (no time line); left out", block[0][0])
            continue
        body = MARKUP.sub(" ", " ".join(text for _, text in block[1:]))
        dated.append((block[1][0], clock, body, int(head[0])))
    if not dated:
        return []
    first, last = dated[0][1], dated[-1][1]
    origin = video_start if video_start is not None and first <= video_start <= last else first
    records: list[SrtRecord | None] = []
    for index, (line, clock, body, counter) in enumerate(dated):
        start = (clock - origin).total_seconds()
        end = (dated[index + 1][1] - origin).total_seconds() if index + 1 < len(dated) else start + 1.0
        records.append(SrtRecord(line, start, max(end, start), counter, _position(body, line, problems), clock))
    return records
