"""Storing one batch in a worker thread while the caller reads the next one and publishes the one before.

``voting.py`` (ballots into ``votes``) and ``main.py`` (voters into ``voters``) both spend most of their time
waiting for PostgreSQL, which psycopg2 does without holding the GIL. ``StoredBehind`` lets that wait overlap
with the caller's own work and keeps the one rule both need: a batch comes back only after it is stored, and
batches come back in the order they were handed over. ``main.py`` publishes a batch when it comes back;
``voting.py``'s worker publishes the votes itself right after storing them (a vote waits for no other batch),
and the caller commits the batch's offsets when it comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Batch = TypeVar("Batch")
Stored = TypeVar("Stored")


class StoredBehind(Generic[Batch, Stored]):
    """``store`` runs in a worker thread, one batch at a time, one batch behind the caller.

    ``hand_over(batch)`` waits for the batch handed over before to be stored, starts storing ``batch``, and
    returns the earlier batch with what ``store`` returned for it (``None`` the first time). ``hand_over(None)``
    collects the last one. An exception of ``store`` is raised by the ``hand_over`` that collects its batch.
    Leaving the ``with`` block waits for a batch still being stored.
    """

    def __init__(self, store: Callable[[Batch], Stored], *, thread_name: str) -> None:
        self._store = store
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._in_hand: tuple[Batch, Future[Stored]] | None = None

    @property
    def being_stored(self) -> Batch | None:
        """The batch handed over last, not collected yet."""
        return self._in_hand[0] if self._in_hand else None

    def hand_over(self, batch: Batch | None) -> tuple[Batch, Stored] | None:
        earlier = self._in_hand
        self._in_hand = None
        stored = (earlier[0], earlier[1].result()) if earlier else None
        if batch is not None:
            self._in_hand = (batch, self._worker.submit(self._store, batch))
        return stored

    def __enter__(self) -> StoredBehind[Batch, Stored]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._worker.shutdown(wait=True)
