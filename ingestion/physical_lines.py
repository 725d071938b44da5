"""The physical line on which each record of a CSV file starts, for the rare file whose
line numbers the stage cannot give: one with empty lines between its records.

DuckDB's reader skips an empty line, as most CSV readers do (RFC 4180 has no empty
record), and gives no line numbers; the loader numbers records from their place in the
stage plus the line breaks inside their quoted fields, which is exact unless empty lines
lie between records (extracts.md §2: "the physical line on which the record starts").
Whether they do, the file's line-break count says (`FileDigest`); only then is the file
read again here, vectorised, a few MB at a time.

A line break lies between records when an even number of quote characters precede it
(RFC 4180: a quote inside a field is doubled, and a field holding one is quoted). A
record starts on the line after such a break, unless that line is empty (nothing, or a
carriage return, before the next break) or the file ends there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .deliveries import Inflater

_NL, _CR, _QUOTE = ord("\n"), ord("\r"), ord('"')
_CHUNK = 1 << 22


def record_start_lines(path: Path, gzipped: bool) -> np.ndarray:
    """The 1-based line on which each record after the header starts, in file order."""
    starts: list[np.ndarray] = []
    quotes_before = 0  # parity of the quote characters before `buffer`
    lines_before = 0  # line breaks before `buffer`
    carry = b""
    chunks = _text(path, gzipped)
    while True:
        chunk = next(chunks, None)
        final = chunk is None
        buffer = carry + (chunk or b"")
        a = np.frombuffer(buffer, np.uint8)
        # A break's next two bytes decide whether the line after it is empty: keep the last
        # two bytes for the next round, until the text ends.
        end = len(a) if final else max(0, len(a) - 2)
        part = a[:end]
        breaks = np.flatnonzero(part == _NL)
        quotes = np.flatnonzero(part == _QUOTE)
        between = ((np.searchsorted(quotes, breaks) + quotes_before) & 1) == 0
        line = lines_before + 1 + np.flatnonzero(between)  # the line each such break ends
        at = breaks[between]
        padded = np.concatenate([a, np.zeros(2, np.uint8)])  # a zero byte marks the text's end
        after1, after2 = padded[at + 1], padded[at + 2]
        empty = (after1 == _NL) | ((after1 == _CR) & (after2 == _NL))
        if final:
            empty |= at + 1 >= len(a)
            empty |= (after1 == _CR) & (at + 2 >= len(a))
        starts.append(line[~empty] + 1)
        quotes_before = (quotes_before + len(quotes)) & 1
        lines_before += len(breaks)
        carry = buffer[end:]
        if final:
            return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def _text(path: Path, gzipped: bool) -> Iterator[bytes]:
    with path.open("rb") as f:
        inflater = Inflater() if gzipped else None
        while chunk := f.read(_CHUNK):
            yield inflater.feed(chunk) if inflater else chunk

