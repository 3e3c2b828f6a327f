"""MLLP framing, pure and bounded: <SB> message <EB><CR> blocks in and out (docs/SPEC.md §2).

The reader keeps at most `max_bytes` of a frame: an oversized frame is hashed and discarded as it streams in,
keeping only its first bytes for the dead letter (docs/SPEC.md §10).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
KEEP_WHEN_TOO_LARGE = 1024 * 1024


def frame(message: bytes) -> bytes:
    """Wrap one HL7 message in an MLLP block: <SB> message <EB><CR>."""
    return SB + message + EB + CR


def unframe(block: bytes) -> bytes:
    """The message inside one complete MLLP block (tolerates a missing trailing CR)."""
    start = block.find(SB)
    end = block.rfind(EB)
    if start == -1 or end == -1 or end < start:
        raise ValueError("not an MLLP block")
    return block[start + 1 : end]


@dataclass(frozen=True)
class Frame:
    payload: bytes


@dataclass(frozen=True)
class Oversize:
    """A frame over the limit: only its first bytes, its full size and SHA-256 are kept."""
    prefix: bytes
    size: int
    sha256: str


class FrameReader:
    """Incremental MLLP deframer with bounded memory. Bytes outside <SB>…<EB> are discarded.

    A frame ends at <EB>; the <CR> that should follow is then outside any frame and dropped like other
    stray bytes, so a sender that omits it still works.
    """

    def __init__(self, max_bytes: int, keep_prefix: int = KEEP_WHEN_TOO_LARGE) -> None:
        self.max_bytes = max_bytes
        self.keep_prefix = keep_prefix
        self.discarded = 0  # stray bytes outside frames (other than the CR after EB)
        self.abandoned = 0  # frames cut off by a new start byte before their end byte
        self._in_frame = False
        self._expect_cr = False
        self._buf = bytearray()
        self._hash: Any = None  # set while an oversized frame streams through
        self._size = 0

    @property
    def in_frame(self) -> bool:
        return self._in_frame

    def feed(self, chunk: bytes) -> list[Frame | Oversize]:
        events: list[Frame | Oversize] = []
        pos, n = 0, len(chunk)
        while pos < n:
            if not self._in_frame:
                if self._expect_cr:
                    self._expect_cr = False
                    if chunk[pos:pos + 1] == CR:
                        pos += 1
                        continue
                start = chunk.find(SB, pos)
                self.discarded += (n if start == -1 else start) - pos
                if start == -1:
                    break
                self._in_frame, self._buf, self._hash, self._size = True, bytearray(), None, 0
                pos = start + 1
                continue
            end = chunk.find(EB, pos)
            restart = chunk.find(SB, pos, n if end == -1 else end)
            if restart != -1:
                # A start byte inside an open frame: the sender abandoned that frame (it got no ACK for it and
                # will resend) and began another. Gluing them would corrupt the next, complete message.
                self.abandoned += 1
                self._in_frame, self._buf, self._hash, self._size = True, bytearray(), None, 0
                pos = restart + 1
                continue
            self._take(chunk[pos:n if end == -1 else end])
            if end == -1:
                break
            events.append(self._finish())
            self._expect_cr = True
            pos = end + 1
        return events

    def _take(self, data: bytes) -> None:
        if not data:
            return
        if self._hash is not None:
            self._hash.update(data)
            self._size += len(data)
            if len(self._buf) < self.keep_prefix:
                self._buf += data[: self.keep_prefix - len(self._buf)]
            return
        if len(self._buf) + len(data) <= self.max_bytes:
            self._buf += data
            return
        # Over the limit: from now on hash and count, keep only the prefix.
        self._hash = hashlib.sha256(self._buf)
        self._hash.update(data)
        self._size = len(self._buf) + len(data)
        head = bytes(self._buf[: self.keep_prefix])
        self._buf = bytearray(head + data[: max(0, self.keep_prefix - len(head))])

    def _finish(self) -> Frame | Oversize:
        self._in_frame = False
        buf, self._buf = bytes(self._buf), bytearray()
        if self._hash is not None:
            event: Frame | Oversize = Oversize(buf, self._size, self._hash.hexdigest())
            self._hash = None
            return event
        return Frame(buf)
