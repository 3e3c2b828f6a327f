"""One bed's chunks -> epoch-aligned analysis windows (docs/SPEC.md §11).

Continuity comes from sample counts, placement from the chunks' timestamps: a chunk that starts within
`gap_tolerance_s` of where the previous one ended continues it (monitor clocks jitter), a later one leaves a gap,
an earlier one is a time jump backwards; both start a new segment, as does a change of rate or of lead set. Chunks
that arrive late by up to `lateness_s` (event time) are put back in order first; an exact redelivery of a chunk is
dropped. Windows lie on fixed epochs (`window_s`, aligned to the Unix epoch, not to arrival), so a restart that
re-reads the same chunks recomputes the same windows.

Raw samples are never written to a changelog. Each chunk carries an opaque `token` (the worker's Kafka event) that is
handed back once no window still needs the chunk's samples; the worker acknowledges it then, so the committed
offset never passes a chunk an open window needs, and a restarted worker re-reads exactly those.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engine.record import EcgRecord


@dataclass(frozen=True)
class Piece:
    """One decoded chunk segment, as the assembler needs it."""

    start_s: float  # epoch seconds of the first sample
    record: EcgRecord  # kind "chunk": leads, fs, samples, flagged (lead-off/INOP), patient
    ident: str  # chunk source id + segment index: an exact redelivery has the same
    token: Any = None  # handed back through `Output.release` once the samples are no longer needed

    @property
    def end_s(self) -> float:
        return self.start_s + self.record.n_samples / self.record.fs


@dataclass(frozen=True)
class Window:
    start_s: float  # epoch-aligned
    record: EcgRecord  # exactly window_s of samples, kind "chunk"


@dataclass
class Output:
    windows: list[Window] = field(default_factory=list)
    release: list[Any] = field(default_factory=list)  # tokens whose samples no open window needs
    dropped: list[str] = field(default_factory=list)  # why pieces were dropped (duplicate, too late)
    segments_started: list[str] = field(default_factory=list)  # why a new segment started (gap, jump, rate, leads)


@dataclass
class _Segment:
    origin_s: float  # time of the segment's first sample (its first chunk's stamp)
    fs: float
    leads: tuple[str, ...]
    template: EcgRecord  # metadata of the latest piece (patient, bed, marks) for the window records
    next_window_s: float
    parts: list[np.ndarray] = field(default_factory=list)
    flags: list[np.ndarray] = field(default_factory=list)
    dropped: int = 0  # samples trimmed from the front
    total: int = 0  # samples appended since the segment started
    # Buffered pieces: (first sample index, end sample index, stamp, token); indices count from the segment start.
    held: list[tuple[int, int, float, Any]] = field(default_factory=list)

    def expected_end_s(self) -> float:
        return self.place() + self.total / self.fs

    def place(self) -> float:
        """Time of sample 0 of the segment, from the stamps of the chunks still buffered: their median, so one
        jittery stamp moves nothing, and a restart that re-reads the same chunks places them the same way."""
        implied = [stamp - first / self.fs for first, _, stamp, _ in self.held] or [self.origin_s]
        return float(np.median(implied))


class StreamAssembler:
    """The assembly state of one stream (sender + device + bed). Not thread-safe; one per stream."""

    def __init__(self, *, window_s: float = 10.0, lateness_s: float = 2.0, gap_tolerance_s: float = 0.25,
                 remember: int = 256) -> None:
        self.window_s, self.lateness_s, self.gap_tolerance_s = window_s, lateness_s, gap_tolerance_s
        self._pending: list[tuple[float, int, Piece]] = []  # sorted by start time, then arrival
        self._arrivals = 0
        self._watermark = -math.inf  # the latest event time seen, less the lateness bound
        self._released_until = -math.inf  # start time of the last piece taken out of the reorder buffer
        self._segment: _Segment | None = None
        self._seen: deque[str] = deque(maxlen=remember)
        self._seen_set: set[str] = set()

    @property
    def next_window_s(self) -> float | None:
        return self._segment.next_window_s if self._segment else None

    @property
    def buffered_s(self) -> float:
        """Seconds of samples held (reorder buffer + the open segment): bounded by window + lateness."""
        seg = (self._segment.total - self._segment.dropped) / self._segment.fs if self._segment else 0.0
        return seg + sum(p.record.n_samples / p.record.fs for _, _, p in self._pending)

    def add(self, piece: Piece) -> Output:
        out = Output()
        if piece.ident in self._seen_set or any(p.ident == piece.ident for _, _, p in self._pending):
            out.dropped.append("duplicate")
            out.release.append(piece.token)
            return out
        if piece.start_s < self._released_until - self.lateness_s:
            seg = self._segment
            if seg is not None and piece.start_s >= seg.origin_s - self.gap_tolerance_s:
                # Inside what was already assembled, later than the lateness bound: it cannot be placed.
                out.dropped.append("too-late")
                out.release.append(piece.token)
                self._remember(piece.ident)
                return out
            # Before the whole current segment: the sender's clock jumped back. Start again from here.
            while self._pending:
                self._take(self._pending.pop(0)[2], out)
            self._watermark = self._released_until = -math.inf
        self._arrivals += 1
        bisect.insort(self._pending, (piece.start_s, self._arrivals, piece), key=lambda t: (t[0], t[1]))
        self._watermark = max(self._watermark, piece.end_s - self.lateness_s)
        while self._pending and self._pending[0][2].end_s <= self._watermark:
            self._take(self._pending.pop(0)[2], out)
        return out

    def reset(self) -> Output:
        """Forget the stream (a different patient on the bed): every held chunk is released, nothing is emitted."""
        out = Output()
        out.release.extend(p.token for _, _, p in self._pending)
        if self._segment is not None:
            out.release.extend(token for *_, token in self._segment.held)
        self._pending, self._segment = [], None
        self._watermark = self._released_until = -math.inf
        return out

    def flush(self) -> Output:
        """Place everything still waiting for late chunks (the stream went quiet): its complete windows come out."""
        out = Output()
        while self._pending:
            self._take(self._pending.pop(0)[2], out)
        return out

    def _remember(self, ident: str) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(ident)
        self._seen_set.add(ident)

    def _take(self, piece: Piece, out: Output) -> None:
        self._remember(piece.ident)
        self._released_until = max(self._released_until, piece.start_s)
        rec, seg = piece.record, self._segment
        why = None
        if seg is None:
            why = "first"
        elif rec.fs != seg.fs:
            why = "rate-change"
        elif rec.leads != seg.leads:
            why = "lead-set-change"
        elif piece.start_s > seg.expected_end_s() + self.gap_tolerance_s:
            why = "gap"
        elif piece.start_s < seg.expected_end_s() - self.gap_tolerance_s:
            why = "time-jump-back"
        if why is not None:
            if seg is not None:
                out.release.extend(token for *_, token in seg.held)  # its unfinished window never completes
                out.segments_started.append(why)
            first_window = math.ceil(piece.start_s / self.window_s - 1e-9) * self.window_s
            seg = self._segment = _Segment(origin_s=piece.start_s, fs=rec.fs, leads=rec.leads, template=rec,
                                           next_window_s=first_window)
        flags = rec.flagged if rec.flagged is not None else np.zeros(rec.signal.shape, dtype=bool)
        # Where its samples lie is counted, not read from its (jittery) stamp; the stamps only place the segment.
        seg.held.append((seg.total, seg.total + rec.n_samples, piece.start_s, piece.token))
        seg.parts.append(rec.signal)
        seg.flags.append(flags)
        seg.total += rec.n_samples
        seg.template = rec
        self._emit(seg, out)

    def _emit(self, seg: _Segment, out: Output) -> None:
        n_win = int(round(self.window_s * seg.fs))
        while True:
            # Never before what was trimmed: the placement may move by a few samples as stamps come and go.
            first = max(seg.dropped, int(round((seg.next_window_s - seg.place()) * seg.fs)))
            if first + n_win > seg.total:
                break
            self._keep_from(seg, first)
            start = first - seg.dropped
            signal, flags = seg.parts[0][:, start:start + n_win], seg.flags[0][:, start:start + n_win]
            t = seg.template
            record = t.replace(signal=signal, flagged=flags if flags.any() else None,
                               acquired_at=datetime.fromtimestamp(seg.next_window_s, UTC),
                               source_id=f"{t.source_id}@{seg.next_window_s:.0f}")
            out.windows.append(Window(seg.next_window_s, record))
            seg.next_window_s += self.window_s
        # Only what the next window needs stays in memory (with a margin for the placement to move within the gap
        # tolerance), and the chunks before that are no longer needed.
        margin = int(math.ceil(self.gap_tolerance_s * seg.fs))
        self._keep_from(seg, int(round((seg.next_window_s - seg.place()) * seg.fs)) - margin)
        done = [h for h in seg.held if h[1] <= seg.dropped]
        if done:
            out.release.extend(token for *_, token in done)
            seg.held = [h for h in seg.held if h[1] > seg.dropped]

    @staticmethod
    def _keep_from(seg: _Segment, index: int) -> None:
        """Drop the buffered samples before absolute sample `index` and join the parts into one array."""
        drop = max(0, min(seg.total, index) - seg.dropped)
        signal = np.concatenate(seg.parts, axis=1) if len(seg.parts) > 1 else seg.parts[0]
        flags = np.concatenate(seg.flags, axis=1) if len(seg.flags) > 1 else seg.flags[0]
        seg.parts, seg.flags = [signal[:, drop:]], [flags[:, drop:]]
        seg.dropped += drop
