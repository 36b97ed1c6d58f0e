"""Micro-batching: every request's segments go through one queue to one model worker.

The worker takes the first waiting segment, collects more for up to ``max_wait_ms`` or until it holds
``max_batch``, and transcribes them in one call on a dedicated thread (the event loop keeps accepting requests
meanwhile). Segments only share a call when their decoding options match. A streaming request's segments carry a
text callback: a transcriber that reports text as it grows (``on_text``) has each row's new text forwarded to the
event loop as it is generated. Admission is bounded: at most
``max_queue`` requests are in the server at once, and the next one is told to come back later (503) instead of
waiting without limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from evoxtral.serving.transcriber import (
    DecodingOptions,
    SegmentTranscript,
    Transcriber,
    as_segment_transcript,
    streams_text,
)
from evoxtral.utils.logging import get_logger

logger = get_logger("evoxtral.serving")


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"queue full, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Job:
    audio: np.ndarray
    options: DecodingOptions
    future: asyncio.Future
    on_text: Callable[[str], None] | None = None  # called on the event loop with each new piece of text


@dataclass(frozen=True)
class SegmentText:
    """A streamed piece of segment ``index``'s text, or (``done``) its final transcript."""

    index: int
    text: str = ""
    done: SegmentTranscript | None = None


class MicroBatcher:
    def __init__(self, transcriber: Transcriber, max_batch: int = 8, max_wait_ms: float = 20.0, max_queue: int = 64):
        self.transcriber = transcriber
        self.streams_text = streams_text(transcriber)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.active_requests = 0
        self.batches_run = 0
        self.segments_done = 0
        self._seconds_per_batch = 1.0  # running estimate, used for Retry-After
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        # One thread: the model is used by one batch at a time, in arrival order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evoxtral-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="evoxtral-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    @property
    def queued_segments(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def retry_after_s(self) -> int:
        batches_ahead = math.ceil((self.queued_segments + 1) / self.max_batch)
        return max(1, math.ceil(batches_ahead * self._seconds_per_batch))

    @contextmanager
    def admit(self):
        """Hold one of the ``max_queue`` request slots for the duration of a request, or raise QueueFull."""
        if self.active_requests >= self.max_queue:
            raise QueueFull(self.retry_after_s())
        self.active_requests += 1
        try:
            yield
        finally:
            self.active_requests -= 1

    def _submit(self, clips: Sequence[np.ndarray], options: DecodingOptions, on_text=None) -> list[_Job]:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        loop = asyncio.get_running_loop()
        jobs = [
            _Job(clip, options, loop.create_future(), on_text and (lambda text, i=i: on_text(i, text)))
            for i, clip in enumerate(clips)
        ]
        for job in jobs:
            self._queue.put_nowait(job)
        return jobs

    async def transcribe(self, clips: Sequence[np.ndarray], options: DecodingOptions) -> list[str | SegmentTranscript]:
        """Each clip's result as the transcriber gave it (a string or a SegmentTranscript)."""
        jobs = self._submit(clips, options)
        try:
            return list(await asyncio.gather(*(job.future for job in jobs)))
        finally:
            for job in jobs:  # a client that went away: its remaining segments are skipped, not transcribed
                job.future.cancel()

    async def stream(self, clips: Sequence[np.ndarray], options: DecodingOptions) -> AsyncIterator[SegmentText]:
        """Each segment's text as it grows and then its transcript, in segment order: pieces of a later segment
        are held until the earlier ones are done. A failed transcription raises here, after what came before it."""
        updates: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        jobs = self._submit(clips, options, on_text=lambda index, text: updates.put_nowait((index, text)))
        held: dict[int, list[str]] = {index: [] for index in range(len(jobs))}
        try:
            for index, job in enumerate(jobs):
                while True:
                    for text in held[index]:
                        yield SegmentText(index, text)
                    held[index] = []
                    if job.future.done() and updates.empty():
                        break
                    if not updates.empty():
                        update_index, text = updates.get_nowait()
                        held[update_index].append(text)
                        continue
                    waiter = asyncio.ensure_future(updates.get())
                    done, _ = await asyncio.wait({waiter, job.future}, return_when=asyncio.FIRST_COMPLETED)
                    if waiter in done:
                        update_index, text = waiter.result()
                        held[update_index].append(text)
                    else:
                        waiter.cancel()
                yield SegmentText(index, done=as_segment_transcript(job.future.result()))
        finally:
            for job in jobs:
                job.future.cancel()

    async def _collect(self) -> list[_Job]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self._collect() if not job.future.done()]
            groups: dict[DecodingOptions, list[_Job]] = {}
            for job in batch:
                groups.setdefault(job.options, []).append(job)
            for options, jobs in groups.items():
                started = time.monotonic()
                try:
                    texts = await loop.run_in_executor(self._executor, self._call_transcriber, jobs, options, loop)
                    if len(texts) != len(jobs):
                        raise RuntimeError(f"transcriber returned {len(texts)} texts for {len(jobs)} clips")
                except Exception as error:  # the model failing is the server's fault: each waiting request gets it
                    logger.exception("transcription of a batch of %d segments failed", len(jobs))
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(error)
                    continue
                elapsed = time.monotonic() - started
                self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * elapsed
                self.batches_run += 1
                self.segments_done += len(jobs)
                for job, text in zip(jobs, texts):
                    if not job.future.done():
                        job.future.set_result(text)

    def _call_transcriber(self, jobs: list[_Job], options: DecodingOptions, loop: asyncio.AbstractEventLoop):
        """On the model thread: one transcriber call, with text callbacks hopping back to the event loop."""
        clips = [job.audio for job in jobs]
        if not self.streams_text or all(job.on_text is None for job in jobs):
            return self.transcriber(clips, options)

        def on_text(row: int, text: str) -> None:
            callback = jobs[row].on_text
            if callback is not None:
                loop.call_soon_threadsafe(callback, text)

        return self.transcriber(clips, options, on_text=on_text)
