"""The jobs the `worker` service of compose.yaml runs (`--app examples.compose_jobs`).

With the stack up (`docker compose up -d --build`), put some work in and watch it go:

    docker compose run --rm --entrypoint python worker -m examples.compose_jobs 1000
    docker compose logs -f worker

Outside Docker, the same against any database where `pgqueue migrate` has run:

    export PGQUEUE_DATABASE_URL=postgresql://localhost/myapp
    python -m examples.compose_jobs 1000
    pgqueue work --app examples.compose_jobs --stop-when-empty
"""

from __future__ import annotations

import asyncio
import sys

from pgqueue import Job, Queue


class ResizeImage(Job):
    """Pretend to resize an image: a short wait stands in for the work."""

    job_name = "examples.compose_jobs.ResizeImage"  # the same name when run as __main__

    image_id: int

    async def handle(self) -> None:
        await asyncio.sleep(0.01)


def main(count: int) -> None:
    with Queue() as queue:
        queue.bulk(ResizeImage(image_id=n) for n in range(count))
        print(f"dispatched {count} jobs; {queue.size()} waiting in 'default'")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
