"""Forward-only binary readers for payloads: peek the first bytes, trim U+FEFF at both ends, count.

Why: payloads can be 1.5 GB files (or gzip streams of them) that must be read once, in blocks,
while content sniffing (gzip, Parquet magic) and Krateo's BOM trimming need to look at the ends.
And a few MB of gzip can expand to many GB (a "bomb"): every byte read after decompression is
counted against a `ByteBudget`, so reading stops at the cap instead of filling memory and disk.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from functions.errors import FieldError, InvalidInput

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
    """Drops U+FEFF (UTF-8) at the start and at the end of the stream (Krateo's exporter trims both ends)."""

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


@dataclass
class ByteBudget:
    """A cap on bytes, shared by every page of one payload; `take` raises InvalidInput naming the
    setting once more than `limit` bytes were taken. `what` says which bytes ("received", "decompressed")."""

    limit: int
    setting: str
    what: str = "decompressed"
    used: int = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise InvalidInput(
                f"the payload is larger than {self.limit} bytes {self.what} ({self.setting}); the cycle is refused "
                "and the last good snapshot kept",
                [FieldError(self.setting, f"more than {self.limit} bytes {self.what}")],
            )

    def give_back(self, n: int) -> None:
        """Bytes that were discarded (a download retried from the start)."""
        self.used = max(0, self.used - n)


def counted(read: Callable[[int], bytes], budget: ByteBudget | None) -> Callable[[int], bytes]:
    """`read` whose every returned byte is taken from `budget` (unchanged without one)."""
    if budget is None:
        return read

    def take(n: int) -> bytes:
        chunk = read(n)
        budget.take(len(chunk))
        return chunk

    return take
