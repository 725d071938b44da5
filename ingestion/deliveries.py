"""Deliveries in a landing folder: data files, their control files, and readiness.

A data file is ready when its control file (`<data file name>.ctl.json`) exists;
providers write it last (extracts.md §1). Nothing here reads data rows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .contracts import EXTRACTS

CONTROL_SUFFIX = ".ctl.json"
# Western Indonesian Time (Jakarta, no daylight saving): where the providers are, and the
# offset of the contract's own example (extracts.md §1).
WIB = dt.timezone(dt.timedelta(hours=7), "WIB")
_NEWLINE = ord("\n")
DATA_EXTENSIONS = ("csv.gz", "csv", "parquet")
NAME_RE = re.compile(r"^(?P<extract>.+?)__(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})\.(?P<ext>csv\.gz|csv|parquet)$")


class FileRejected(Exception):
    """A file-level rejection (extracts.md §1) with its reason code."""

    def __init__(self, code: str, detail: str, line: int | None = None):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.line = line  # where the reader stopped, when it says


@dataclass(frozen=True)
class Control:
    extract: str
    business_date: dt.date
    schema_version: int
    row_count: int
    sha256: str
    produced_at: dt.datetime  # UTC, naive


@dataclass
class Delivery:
    path: Path
    control_path: Path
    name: str  # path relative to the landing folder: the file's identity in the ledger
    extract: str | None = None
    business_date: dt.date | None = None
    ext: str | None = None
    control: Control | None = None
    digest: FileDigest | None = None  # once the data file has been read

    @property
    def data_sha256(self) -> str | None:
        return self.digest.sha256 if self.digest else None

    @property
    def sort_key(self) -> tuple:
        produced = self.control.produced_at if self.control else dt.datetime.min
        return (self.extract or "~", self.business_date or dt.date.max, produced, self.name)


UNRECOGNISED = "unrecognised"
# What `paritrana generate` writes beside its deliveries (the files, the planted defects)
GENERATOR_MANIFEST = ".generator.json"


def extract_group(name: str) -> str:
    """The extract a file name claims, for splitting work per extract (the DAG maps one
    ingest task over these); names that claim none form one group of their own, so their
    UNKNOWN_EXTRACT rejection is still recorded."""
    from .contracts import EXTRACTS

    claimed = name.rsplit("/", 1)[-1].split("__", 1)[0]
    return claimed if claimed in EXTRACTS else UNRECOGNISED


@dataclass(frozen=True)
class LandingScan:
    ready: list[Delivery]
    not_ready: list[str]  # data files still waiting for their control file
    orphan_controls: list[str]  # control files whose data file is absent
    ignored: list[str]  # hidden or partial files
    broken_links: list[str] = field(default_factory=list)  # symbolic links to nothing


def require_landing(landing: Path, home: Path | None = None) -> None:
    if not landing.exists():
        raise FileNotFoundError(f"landing folder {landing} does not exist")
    if not landing.is_dir():
        raise NotADirectoryError(f"landing {landing} is a file, not a folder")
    if home is not None and os.path.realpath(home) == os.path.realpath(landing):
        raise ValueError(f"the landing folder {landing} is the warehouse's home: give each its own folder "
                         "(the landing may be inside the home, as the demo's is, or the home inside the landing)")


def scan_landing(landing: Path, home: Path | None = None) -> LandingScan:
    """Every file below `landing` (sub-folders too: providers may re-send into one),
    named by its path relative to `landing`. Dot-files and `.tmp`/`.part` are ignored, and
    so is the warehouse's `home` when it lies inside the landing (its own files are no
    deliveries: its publications alone would be listed as waiting, more every night), and the
    generator's list of what it wrote, which is the product's own file, not a provider's."""
    require_landing(landing, home)
    ready, not_ready, orphans, ignored = [], [], [], []
    names, broken = _files_below(landing, home)
    names.pop(GENERATOR_MANIFEST, None)
    for name, path in sorted(names.items()):
        if any(part.startswith(".") for part in Path(name).parts) or name.endswith((".tmp", ".part")):
            ignored.append(name)
        elif name.endswith(CONTROL_SUFFIX):
            if name[: -len(CONTROL_SUFFIX)] not in names:
                orphans.append(name)
        elif name + CONTROL_SUFFIX in names:
            ready.append(Delivery(path, names[name + CONTROL_SUFFIX], name))
        else:
            not_ready.append(name)
    return LandingScan(ready, not_ready, orphans, ignored, broken)


def _files_below(landing: Path, home: Path | None = None) -> tuple[dict[str, Path], list[str]]:
    """The files below `landing` by relative name, following symbolic links, folders
    included (a provider's drop folder linked into the landing is part of it; `rglob`
    would skip it without a word), each real folder once (a link may loop); and the
    links that lead nowhere, which are reported rather than passed over."""
    files: dict[str, Path] = {}
    broken: list[str] = []
    seen: set[str] = {os.path.realpath(home)} if home else set()
    for root, folders, entries in os.walk(landing, followlinks=True):
        seen.add(os.path.realpath(root))
        folders[:] = sorted(f for f in folders if os.path.realpath(os.path.join(root, f)) not in seen)
        for entry in entries:
            path = Path(root, entry)
            name = path.relative_to(landing).as_posix()
            if path.is_file():
                files[name] = path
            elif path.is_symlink() and not path.exists():
                broken.append(name)
    return files, sorted(broken)


def looks_like_delivery(name: str) -> bool:
    """Whether an ignored file (hidden, or partial) would be a delivery under its plain name,
    such as `.upload/claims__2025-01-05.csv` or `claims__2025-01-05.csv.part`: worth telling
    the data engineer, where `.DS_Store` is not."""
    plain = Path(name).name.lstrip(".").removesuffix(".tmp").removesuffix(".part").removesuffix(CONTROL_SUFFIX)
    return NAME_RE.match(plain) is not None


def name_problem(name: str) -> str | None:
    """Why a data file's name is not `<extract>__<YYYY-MM-DD>.<ext>` of a known extract and
    a calendar date (its UNKNOWN_EXTRACT detail), or None when it is."""
    m = NAME_RE.match(name)
    if not m:
        case = NAME_RE.match(name.lower())
        hint = f" (names are case-sensitive: {name.lower()} would be one)" \
            if case and case["extract"] in EXTRACTS else ""
        return f"file name does not follow <extract>__<YYYY-MM-DD>.<csv|csv.gz|parquet>{hint}"
    if m["extract"] not in EXTRACTS:
        return f"'{m['extract']}' is not an extract of the contract"
    try:
        dt.date.fromisoformat(m["date"])
    except ValueError:
        return f"'{m['date']}' in the file name is not a calendar date"
    return None


def parse_name(delivery: Delivery) -> None:
    """UNKNOWN_EXTRACT unless the name is `<extract>__<YYYY-MM-DD>.<ext>` with a known extract."""
    if problem := name_problem(delivery.path.name):
        raise FileRejected("UNKNOWN_EXTRACT", problem)
    m = NAME_RE.match(delivery.path.name)
    delivery.business_date = dt.date.fromisoformat(m["date"])
    delivery.extract, delivery.ext = m["extract"], m["ext"]


def read_control(delivery: Delivery) -> None:
    """CONTROL_INVALID for bad JSON or disagreement with the name; UNSUPPORTED_SCHEMA after."""
    try:
        doc = json.loads(delivery.control_path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise FileRejected("CONTROL_INVALID", "control file is not UTF-8 text") from None
    except json.JSONDecodeError as e:  # a control file holds no personal data: say where
        raise FileRejected("CONTROL_INVALID", f"control file is not valid JSON: {e.msg} at line {e.lineno}, "
                           f"column {e.colno}") from None
    if not isinstance(doc, dict):
        raise FileRejected("CONTROL_INVALID", "control file is not a JSON object")

    def field(name, kind):
        value = doc.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            what = {"str": "a JSON string", "int": "a JSON whole number (1, not 1.0 or \"1\")"}[kind.__name__]
            got = "missing" if name not in doc else json.dumps(value)[:60]
            raise FileRejected("CONTROL_INVALID", f"control field '{name}' must be {what}, not {got}")
        return value

    extract, date = field("extract", str), field("business_date", str)
    if extract != delivery.extract:
        raise FileRejected("CONTROL_INVALID", f"control says extract '{extract}', file name says '{delivery.extract}'")
    if date != delivery.business_date.isoformat():
        raise FileRejected("CONTROL_INVALID", f"control says business_date {date}, file name says {delivery.business_date}")
    version = field("schema_version", int)
    row_count = field("row_count", int)
    sha = field("sha256", str).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise FileRejected("CONTROL_INVALID", "control field 'sha256' is not a hex SHA-256 digest")
    try:
        produced = dt.datetime.fromisoformat(field("produced_at", str))
    except ValueError:
        raise FileRejected("CONTROL_INVALID", "control field 'produced_at' is not an ISO 8601 timestamp") from None
    if produced.tzinfo is None:
        produced = produced.replace(tzinfo=WIB)  # a time without its offset is the providers' own
    produced = produced.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if row_count < 0:
        raise FileRejected("CONTROL_INVALID", "control field 'row_count' is negative")
    delivery.control = Control(extract, delivery.business_date, version, row_count, sha, produced)
    if version != 1:
        raise FileRejected("UNSUPPORTED_SCHEMA", f"schema_version {version} is not supported (only 1)")


@dataclass(frozen=True)
class FileDigest:
    sha256: str  # of the bytes as stored
    # b"\n" bytes of the text (a gzip file's decompressed), None when it does not decompress
    newlines: int | None
    ends_with_newline: bool
    trailing_blank_lines: int  # empty lines (b"\n" or b"\r\n") at the very end of the text


# One buffer of 1 MiB, read into again and again: a new 4 MiB bytes object for every read,
# and numpy's comparison array of that size, cost the digest a third more (2 GB of the 1.0
# participants file: 2.4-2.7 s against 1.7 s, all of it on the core beside the scan).
READ_SIZE = 1 << 20


def file_digest(path: Path, gzipped: bool = False) -> FileDigest:
    """The file's SHA-256 and, in the same read, the line breaks of its text: counting them
    costs a fraction of what finding them in every record would cost the load. numpy counts
    them six times faster than bytes.count, and it, hashlib and zlib release the GIL, so
    the digest can run in a thread beside a DuckDB scan (ingestion.loader). A gzip file is
    read by DuckDB on one thread, which leaves the other core to decompress it here
    (about 3 CPU-s per GB of text)."""
    h, newlines, tail = hashlib.sha256(), 0, b""
    inflater = Inflater() if gzipped else None
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buffer):
            chunk = view[:n]
            h.update(chunk)
            if inflater and newlines is not None:
                try:
                    chunk = inflater.feed(chunk)
                except zlib.error:
                    newlines = None  # the reader rejects the file as UNREADABLE
                    continue
            if newlines is not None and len(chunk):
                newlines += int(np.count_nonzero(np.frombuffer(chunk, np.uint8) == _NEWLINE))
                tail = (tail + bytes(chunk[-256:]))[-256:]
    end = tail.rstrip(b"\r\n")
    blank = max(0, tail[len(end):].count(b"\n") - 1) if end or len(tail) < 256 else 0
    return FileDigest(h.hexdigest(), newlines, tail.endswith(b"\n"), blank)


class Inflater:
    """The text of a gzip stream fed in pieces, every member of it (a concatenation of
    gzip files is one gzip file, as DuckDB and gzip(1) read it)."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)

    def feed(self, data: bytes | memoryview) -> bytes:
        out = []
        while data:
            out.append(self._z.decompress(data))
            if not self._z.eof:
                break
            data = self._z.unused_data
            self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        return b"".join(out)


def file_sha256(path: Path) -> str:
    return file_digest(path).sha256


def control_sha256(delivery: Delivery) -> str:
    return hashlib.sha256(delivery.control_path.read_bytes()).hexdigest()
