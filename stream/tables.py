"""A faust Table whose changelog writes can be awaited before the offsets they stand for are acknowledged.

faust sends a table write to its changelog through the producer's buffer in the background, and flushes that
buffer before each commit; but the flush gives up after 0.1 s without a send and can miss the message its buffer task
has just taken off the queue, so a SIGKILLed worker could commit an offset whose table write never reached the broker
and restart with older state than the offsets it skips (a lost trend window, a second episode). Each agent therefore
awaits `confirmed()` (the broker's acks=all for every write so far) before it acknowledges the events behind them.
"""
from __future__ import annotations

import asyncio
from typing import Any

import faust


class DurableTable(faust.Table):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unconfirmed: set[asyncio.Future] = set()

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self._unconfirmed.add(fut)
        fut.add_done_callback(self._unconfirmed.discard)
        return fut

    async def confirmed(self) -> None:
        """Return once every changelog write made so far is on the broker; raise if one failed (the events behind it
        then stay unacknowledged and are redelivered)."""
        if self._unconfirmed:
            await asyncio.gather(*list(self._unconfirmed))
