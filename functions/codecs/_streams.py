"""Forward-only binary readers for payloads: peek the first bytes, trim U+FEFF at both ends.

Why: payloads can be 1.5 GB files (or gzip streams of them) that must be read once, in blocks,
while content sniffing (gzip, Parquet magic) and Krateo's BOM trimming need to look at the ends.
"""

from __future__ import annotations

import io
from collections.abc import Callable

BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 16


class PeekReader(io.RawIOBase):
    """Wraps a `read(n)` callable; `peek(n)` returns up to n leading bytes without consuming them."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        super().__init__()
        self._read = read
        self._head = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def peek(self, n: int) -> bytes:
        while len(self._head) < n and not self._eof:
            chunk = self._read(max(n - len(self._head), _CHUNK))
            if not chunk:
                self._eof = True
            self._head += chunk
        return self._head[:n]

    def skip(self, n: int) -> None:
        self.peek(n)
        self._head = self._head[n:]

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            out = self._head + (b"" if self._eof else self._read_all())
            self._head, self._eof = b"", True
            return out
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            return out
        if self._eof:
            return b""
        chunk = self._read(size)
        if not chunk:
            self._eof = True
        return chunk

    def _read_all(self) -> bytes:
        parts = []
        while chunk := self._read(1 << 24):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class BomTrimmer(PeekReader):
    """Drops U+FEFF (UTF-8) at the start and at the end of the stream (spec §5.4)."""

    def __init__(self, inner: PeekReader) -> None:
        while inner.peek(3) == BOM:
            inner.skip(3)
        super().__init__(inner.read)
        self._held = b""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data = self._held + super().read(-1)
            self._held = b""
            return data[:-3] if data.endswith(BOM) else data
        parts, have = [self._held], len(self._held)
        while have < size + 3:  # full reads: readers may take a short read for the end
            chunk = super().read(size + 3 - have)
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if have < size + 3:  # end of stream reached
            self._held = b""
            return data[:-3] if data.endswith(BOM) else data
        self._held = data[size:]
        return data[:size]
