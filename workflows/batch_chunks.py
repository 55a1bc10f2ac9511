"""A batch too large for one run (POST /notify/batch of up to HERALD_MAX_BATCH_ITEMS items): its items
in chunks, each a BatchWorkflow run of its own (workflows/batch.py), and this run, named by the
batch id, over them.

A run's input has a size limit (Temporal's 2 MB payload limit), and a run's history should stay
small at any batch size, so the items never pass through this run: the API starts every chunk
with its own items (`<batchId>-chunk<k>`, items `first` onwards), each holding until it is
released, and then this run, which releases them all. That order makes the batch all or nothing:
if the API stops before this run starts, no client was told the batch was accepted, and its chunks
end unreleased, having sent nothing (a retried POST with the same Idempotency-Key starts what is
missing). Each chunk reports its counts when its items are all final; with every count in, the batch
posts its one `batch.completed` callback and ends with the counts. Its history holds two signals
per chunk, and it continues as new long before that grows large.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from common.logs import log_event
    from common.models import (
        BATCH_GO_SIGNAL,
        CHUNK_DONE_SIGNAL,
        BatchSummary,
        ChunkDone,
        ChunkedBatchInput,
        batch_chunk_id,
    )
    from common.names import CHUNKED_BATCH_WORKFLOW

from workflows.callback import post_batch_callback


@workflow.defn(name=CHUNKED_BATCH_WORKFLOW)
class ChunkedBatchWorkflow:
    def __init__(self) -> None:
        self.done: dict[str, dict[str, int]] = {}

    @workflow.run
    async def run(self, batch: ChunkedBatchInput) -> BatchSummary:
        self.done |= batch.done
        chunks = [batch_chunk_id(batch.batch_id, k) for k in range(batch.chunks)]
        try:
            if not batch.released:
                await asyncio.gather(
                    *(workflow.get_external_workflow_handle(chunk).signal(BATCH_GO_SIGNAL) for chunk in chunks)
                )
            await workflow.wait_condition(
                lambda: (
                    len(self.done) == batch.chunks
                    or workflow.info().get_current_history_length() > batch.history_events
                )
            )
        except asyncio.CancelledError:
            # Cancelled from outside the API (the Web UI): so are the chunks, which still report.
            await asyncio.gather(*(workflow.get_external_workflow_handle(chunk).cancel() for chunk in chunks))
            await workflow.wait_condition(lambda: len(self.done) == batch.chunks)
        if len(self.done) < batch.chunks:
            workflow.continue_as_new(replace(batch, released=True, done=self.done))
        counts: dict[str, int] = {}
        for chunk_counts in self.done.values():
            for phase, n in chunk_counts.items():
                counts[phase] = counts.get(phase, 0) + n
        log_event("batch.done", log=workflow.logger, batch_id=batch.batch_id, kind=batch.channel, **counts)
        if batch.callback_url:
            await post_batch_callback(batch.callback_url, batch.batch_id, batch.channel, batch.total, counts)
        return BatchSummary(batch_id=batch.batch_id, channel=batch.channel, total=batch.total, counts=counts)

    @workflow.signal(name=CHUNK_DONE_SIGNAL)
    def chunk_done(self, chunk: ChunkDone) -> None:
        self.done[str(chunk.first)] = chunk.counts
