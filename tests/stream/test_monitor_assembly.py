"""Chunks of one bed -> epoch-aligned windows, on a real recording cut into 1-s chunks (samples/: PTB-XL ecg_id 143,
500 Hz): order, jitter, reordering, duplicates, gaps, jumps, rate and lead-set changes, lead-off, and when each
chunk may be acknowledged."""
from __future__ import annotations

import numpy as np
import pytest

from engine.record import make_record
from stream.monitor.assembly import Piece, StreamAssembler
from tests.support.chunks import monitoring_piece

T0 = 1_764_660_003.4  # not on a window boundary: the first window starts at the next multiple of 10 s


@pytest.fixture(scope="module")
def source():
    """30 s of a real recording (its 10 s three times over), I, II, III and an unknown-position chest lead."""
    ten = monitoring_piece(10.0)
    signal = np.concatenate([ten.signal] * 3, axis=1)
    return make_record(signal, list(ten.leads), ten.fs, "test:stream", kind="chunk", patient_id="MRN-77")


def chunks(src, seconds: float = 1.0, t0: float = T0):
    n = int(seconds * src.fs)
    out = []
    for i in range(src.n_samples // n):
        rec = src.replace(signal=src.signal[:, i * n:(i + 1) * n])
        out.append(Piece(t0 + i * seconds, rec, f"chunk-{i}", token=i))
    return out


def run(pieces, **options):
    a = StreamAssembler(**options)
    windows, released, dropped, segments = [], [], [], []
    for p in pieces:
        o = a.add(p)
        windows += o.windows
        released += o.release
        dropped += o.dropped
        segments += o.segments_started
        assert a.buffered_s <= a.window_s + a.lateness_s + 2.0  # memory per stream stays bounded
    o = a.flush()
    return windows, released + o.release, dropped, segments, a


def expected(src, start_s: float, t0: float = T0):
    i0 = int(round((start_s - t0) * src.fs))
    return src.signal[:, i0:i0 + int(10 * src.fs)]


def test_in_order_chunks_make_epoch_aligned_windows_of_the_exact_samples(source):
    windows, released, dropped, _, _ = run(chunks(source))
    assert [w.start_s for w in windows] == [1_764_660_010.0, 1_764_660_020.0]  # 30 s from T0 holds two full epochs
    for w in windows:
        assert w.start_s % 10 == 0 and w.record.n_samples == 5000 and w.record.kind == "chunk"
        np.testing.assert_array_equal(w.record.signal, expected(source, w.start_s))
        assert w.record.lead_marks.get("V") == "unknown-position" and w.record.patient_id == "MRN-77"
    # Chunks 26-29 (from 029.4 s) feed the window of 030 s, still open when the stream ends: not acknowledged.
    assert sorted(released) == list(range(26)) and dropped == []


def test_reordering_and_duplicates_give_the_same_windows(source):
    base, _, _, _, _ = run(chunks(source))
    shuffled = chunks(source)
    for i in range(0, len(shuffled) - 1, 3):  # swap neighbours: up to 1 s late, inside the 2 s lateness bound
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    with_copies = shuffled[:10] + [shuffled[4], shuffled[7]] + shuffled[10:] + [shuffled[12]]
    windows, released, dropped, segments, _ = run(with_copies)
    assert [w.start_s for w in windows] == [w.start_s for w in base]
    for w, b in zip(windows, base, strict=True):
        np.testing.assert_array_equal(w.record.signal, b.record.signal)
    assert dropped == ["duplicate"] * 3 and segments == []
    assert sorted(set(released)) == list(range(26)) and len(released) == 29  # each copy is acknowledged too


def test_jittered_stamps_place_windows_by_their_median(source):
    """Stamps jitter by up to 80 ms (the monitor's sending clock); samples are placed by count, the segment by the
    median of the stamps of the chunks a window is cut from, so the windows are the recording's own samples, at
    most a few samples off, and contiguous."""
    rng = np.random.default_rng(7)
    jittered = [Piece(p.start_s + rng.uniform(-0.08, 0.08), p.record, p.ident, p.token) for p in chunks(source)]
    windows, _, _, segments, _ = run(jittered)
    assert segments == [] and [w.start_s for w in windows] == [1_764_660_010.0, 1_764_660_020.0]
    for w in windows:
        i0 = int(round((w.start_s - T0) * source.fs))
        lags = [lag for lag in range(-40, 41)
                if np.array_equal(w.record.signal, source.signal[:, i0 + lag:i0 + lag + 5000])]
        assert len(lags) == 1 and abs(lags[0]) <= 20  # median of ~10 uniform(-80, 80) ms stamps: well inside 40 ms


def test_a_restart_from_the_oldest_held_chunk_cuts_the_same_windows(source):
    """What a worker re-reads after a crash starts at the oldest chunk not yet acknowledged; the windows it then
    cuts are the ones the first run cut, sample for sample, even with jittered stamps."""
    rng = np.random.default_rng(11)
    pieces = [Piece(p.start_s + rng.uniform(-0.08, 0.08), p.record, p.ident, p.token) for p in chunks(source)]
    a, released, first_run = StreamAssembler(), set(), []
    for p in pieces[:20]:
        o = a.add(p)
        released |= set(o.release)
        first_run += o.windows
    for p in pieces[20:]:
        first_run += a.add(p).windows
    oldest_held = min(p.token for p in pieces if p.token not in released)
    again, b = [], StreamAssembler()
    for p in pieces[oldest_held:]:
        again += b.add(p).windows
    later = [w for w in first_run if w.start_s >= again[0].start_s]
    assert [w.start_s for w in again] == [w.start_s for w in later] and again
    for w, v in zip(again, later, strict=True):
        np.testing.assert_array_equal(w.record.signal, v.record.signal)


def test_a_gap_starts_a_new_segment_and_windows_stay_on_the_epochs(source):
    pieces = chunks(source)
    del pieces[9:13]  # 4 s missing around the first window boundary
    windows, released, _, segments, _ = run(pieces)
    assert segments == ["gap"]
    assert [w.start_s for w in windows] == [1_764_660_020.0]  # the window with the hole is not made
    np.testing.assert_array_equal(windows[0].record.signal, expected(source, 1_764_660_020.0))
    assert sorted(released) == sorted(p.token for p in pieces if p.token < 26)


def test_time_jump_rate_change_and_lead_set_change_start_new_segments(source):
    pieces = chunks(source)
    jump = pieces[:15] + [Piece(p.start_s - 30.0, p.record, p.ident + "b", p.token) for p in pieces[15:]]
    assert run(jump)[3] == ["time-jump-back"]
    two_leads = [Piece(p.start_s, p.record.replace(signal=p.record.signal[:2], leads=p.record.leads[:2]),
                       p.ident, p.token) if i >= 20 else p for i, p in enumerate(pieces)]
    assert run(two_leads)[3] == ["lead-set-change"]
    half = [Piece(p.start_s, p.record.replace(signal=p.record.signal[:, ::2], fs=250.0), p.ident, p.token)
            if i >= 20 else p for i, p in enumerate(pieces)]
    assert run(half)[3] == ["rate-change"]


def test_lead_off_marks_the_window_and_too_late_chunks_are_dropped(source):
    pieces = chunks(source)
    off = np.zeros(pieces[12].record.signal.shape, dtype=bool)
    off[1] = True  # lead II off for one second (INOP)
    pieces[12] = Piece(pieces[12].start_s, pieces[12].record.replace(flagged=off), pieces[12].ident, 12)
    late = pieces[:25] + [Piece(pieces[5].start_s, pieces[5].record, "late-one", "late")] + pieces[25:]
    windows, released, dropped, _, _ = run(late)
    first = windows[0].record
    assert first.flagged is not None and first.flagged[1].sum() == 500 and not first.flagged[[0, 2, 3]].any()
    assert windows[1].record.flagged is None
    assert dropped == ["too-late"] and "late" in released


def test_no_chunk_is_released_while_an_open_window_needs_it(source):
    a = StreamAssembler()
    held = {}
    for p in chunks(source):
        held[p.token] = p
        o = a.add(p)
        next_window = a.next_window_s
        for token in o.release:
            assert next_window is None or held[token].end_s <= next_window + 0.01
    assert a.buffered_s <= 12.0


def test_the_kept_placement_is_the_median_of_the_held_stamps(source):
    """The placement is kept incrementally as pieces are held and let go; at every step it must be what numpy's
    median of the held pieces' implied start times gives (the rule of docs/SPEC.md §11.9)."""
    rng = np.random.default_rng(7)
    asm = StreamAssembler()
    stamps = T0 + np.arange(120) + rng.normal(0, 0.05, 120)  # jittered 1-s stamps
    pieces = chunks(source, t0=T0)
    checked = 0
    for k, stamp in enumerate(stamps):
        p = pieces[k % len(pieces)]
        asm.add(Piece(float(stamp), p.record, f"c{k}", token=k))
        seg = asm._segment
        if seg is not None and seg.held:
            implied = [st - first / seg.fs for first, _, st, _ in seg.held]
            assert seg.place() == float(np.median(implied))
            checked += 1
    assert checked > 100
