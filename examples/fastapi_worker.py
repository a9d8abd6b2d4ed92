"""FastAPI with its worker inside: the app's lifespan runs a `pgqueue.Worker`, an endpoint
dispatches a report, another reads its status and result.

Run from the repository root, against a database where `pgqueue migrate` has run:

    pip install fastapi uvicorn
    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    uvicorn examples.fastapi_worker:app
    curl -X POST localhost:8000/reports -H 'content-type: application/json' -d '{"rows": 3}'
    curl localhost:8000/reports/1          # state, progress, and the result once it completed

One process serves requests and works the `fastapi-worker` queue: no second deployment for a
small app. The worker starts when the app starts (the lifespan waits until it is connected) and stops with
it, as SIGTERM stops `pgqueue work`: running jobs get their grace period, the rest go back to
the queue. It installs no signal handlers, so uvicorn's stay in charge of shutdown. A blocking
`def handle` would still run in a child process; CPU-heavy work belongs in `pgqueue work`
processes of its own, where it cannot slow the requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import pgqueue
from pgqueue import AsyncQueue, Job


class BuildReport(Job):
    """Count to `rows`, reporting progress on the way, and return a summary to keep."""

    queue = "fastapi-worker"
    job_name = "examples.fastapi_worker.BuildReport"  # stable across renames and moves
    keep_result = "1h"  # the endpoint below reads the result back for an hour

    rows: int

    async def handle(self) -> dict[str, int]:
        for done in range(1, self.rows + 1):
            await asyncio.sleep(0.01)  # the work of one row
            self.progress(done / self.rows, f"{done} of {self.rows} rows")
        return {"rows": self.rows}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncQueue() as queue, pgqueue.Worker(queues=("fastapi-worker",), concurrency=10):
        app.state.queue = queue
        yield


app = FastAPI(lifespan=lifespan)


class ReportRequest(BaseModel):
    rows: int


@app.post("/reports", status_code=202)
async def request_report(body: ReportRequest, request: Request) -> dict[str, int]:
    job_id = await request.app.state.queue.dispatch(BuildReport(rows=body.rows))
    return {"id": job_id}


@app.get("/reports/{job_id}")
async def report_status(job_id: int, request: Request) -> dict[str, Any]:
    status = await request.app.state.queue.status(job_id)
    if status is None:
        raise HTTPException(status_code=404, detail=f"no report {job_id}")
    return {
        "state": status.state,
        "progress": status.progress,
        "message": status.progress_message,
        "result": status.result,
        "error": status.error,
    }
