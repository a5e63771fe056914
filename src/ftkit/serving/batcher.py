"""Dynamic batching: concurrent requests gathered into one model call, answered one by one.

Each request puts its inputs in a queue and awaits its own answer. One gathering task takes the first
waiting request, then keeps taking more until the batch holds ``max_batch_size`` inputs or
``max_wait_ms`` have passed since the first, and hands the batch to ``predict`` on a single worker
thread (the model never runs on the event loop, and never in two threads at once). While the worker
runs, new requests queue up, so under load the next batch is full without waiting. Each request gets its
slice of the outputs, in order. A request never straddles two batches; one larger than
``max_batch_size`` goes alone (``predict`` splits it into forward passes).

A batch that fails is retried request by request, so one bad request fails alone and never takes
the others in its batch down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("ftkit.serving")


class Busy(Exception):
    """The queue holds ``max_queue`` inputs already."""


@dataclass
class _Job:
    records: list[Any]
    future: asyncio.Future = field(repr=False)


@dataclass
class BatchStats:
    batches: int = 0
    inputs: int = 0
    requests: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "requests": self.requests, "inputs": self.inputs,
                "largest_batch": self.largest_batch,
                "mean_batch": round(self.inputs / self.batches, 2) if self.batches else 0.0}


class Batcher:
    """``await batcher.submit(records)`` -> ``predict(records)``, computed together with concurrent requests."""

    def __init__(self, predict: Callable[[list[Any]], list[Any]], *, max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 4096):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.predict, self.max_batch_size, self.max_wait = predict, max_batch_size, max(0.0, max_wait_ms) / 1000
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._queued = 0  # inputs waiting (not yet handed to the worker)
        self._running = False  # a batch is on the worker thread
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftkit-model")
        self._task = asyncio.create_task(self._gather(), name="ftkit-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the gathering task and the worker thread."""
        if self._task is None:
            return
        while (self._queued or self._running) and not self._task.done():
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._executor.shutdown(wait=True)
        self._task = None

    async def submit(self, records: list[Any]) -> list[Any]:
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        if self._queued + len(records) > self.max_queue and self._queued:
            raise Busy(f"{self._queued} inputs are waiting (--max-queue {self.max_queue})")
        job = _Job(list(records), asyncio.get_running_loop().create_future())
        self._queued += len(job.records)
        self._queue.put_nowait(job)
        return await job.future

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Job | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch, size = [first], len(first.records)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                if size + len(job.records) > self.max_batch_size:
                    carry = job  # the next batch starts with it
                    break
                batch.append(job)
                size += len(job.records)
            self._queued -= size
            self._running = True
            try:
                await self._run(batch)
            finally:
                self._running = False

    async def _run(self, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.done()]  # a client that went away is not computed
        if not live:
            return
        records = [r for job in live for r in job.records]
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self.predict, records)
            if len(outputs) != len(records):
                raise RuntimeError(f"predict returned {len(outputs)} outputs for {len(records)} inputs")
        except Exception as e:  # noqa: BLE001 - answered to the requests, never raised in the gathering task
            if len(live) > 1:
                for job in live:  # find the request that fails; the others still get their answers
                    await self._run([job])
                return
            if not live[0].future.done():
                live[0].future.set_exception(e)
            return
        self.stats.batches += 1
        self.stats.requests += len(live)
        self.stats.inputs += len(records)
        self.stats.largest_batch = max(self.stats.largest_batch, len(records))
        start = 0
        for job in live:
            end = start + len(job.records)
            if not job.future.done():
                job.future.set_result(outputs[start:end])
            start = end
