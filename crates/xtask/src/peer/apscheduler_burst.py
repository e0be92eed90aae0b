"""The peer of `cargo xtask bench-peer`: APScheduler 3.11 configured as AutoGPT's scheduler
configures it (backend/executor/scheduler.py): a BackgroundScheduler with a SQLAlchemy job store
on PostgreSQL (pool of 3, no overflow), a thread pool of 3 workers, coalesce, no misfire limit,
UTC. It stores COUNT graph-execution jobs whose cron trigger fires at DUE (Unix seconds), each
calling `add_graph_execution` over JSON-RPC on the execution service at EXECUTOR, as AutoGPT's
`execute_graph` does, then fires them and exits once every job has run.

Arguments: DATABASE_URL SCHEMA EXECUTOR COUNT DUE
"""

import json
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import MetaData, create_engine, text

POOL_SIZE = 3


def execute_graph(executor, schedule_id, user_id, graph_id, graph_version, scheduled_time):
    """One fire: AutoGPT's add_graph_execution on the execution service."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": schedule_id,
            "method": "add_graph_execution",
            "params": {
                "user_id": user_id,
                "graph_id": graph_id,
                "graph_version": graph_version,
                "inputs": {},
                "graph_credentials_inputs": {},
                "schedule_id": schedule_id,
                "scheduled_time": scheduled_time,
            },
        }
    ).encode()
    request = urllib.request.Request(
        executor, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def main():
    database_url, schema, executor, count, due = sys.argv[1:6]
    count, due = int(count), int(due)
    engine = lambda: create_engine(database_url, pool_size=POOL_SIZE, max_overflow=0)
    # AutoGPT's schema exists before its scheduler starts (the backend's migrations make it).
    with engine().begin() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=POOL_SIZE)},
        job_defaults={"coalesce": True, "max_instances": 1000, "misfire_grace_time": None},
        jobstores={
            "execution": SQLAlchemyJobStore(
                engine=engine(), metadata=MetaData(schema=schema), tablename="apscheduler_jobs"
            ),
            "batched_notifications": SQLAlchemyJobStore(
                engine=engine(),
                metadata=MetaData(schema=schema),
                tablename="apscheduler_jobs_batched_notifications",
            ),
            "weekly_notifications": MemoryJobStore(),
        },
        timezone=timezone.utc,
    )
    done = threading.Semaphore(0)
    failed = []

    def finished(event):
        if event.exception:
            failed.append(repr(event.exception))
        done.release()

    scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    # Paused while the jobs are stored, so that none is looked at before all are in.
    scheduler.start(paused=True)
    at = datetime.fromtimestamp(due, tz=timezone.utc)
    scheduled_time = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    trigger = CronTrigger(
        year=at.year, month=at.month, day=at.day, hour=at.hour, minute=at.minute,
        second=at.second, timezone=timezone.utc,
    )
    for i in range(count):
        schedule_id = f"peer-{i}"
        scheduler.add_job(
            execute_graph,
            trigger=trigger,
            id=schedule_id,
            jobstore="execution",
            replace_existing=True,
            kwargs={
                "executor": executor,
                "schedule_id": schedule_id,
                "user_id": f"user{i % 1000}",
                "graph_id": f"graph{i}",
                "graph_version": 1,
                "scheduled_time": scheduled_time,
            },
        )
    left = due - time.time()
    print(f"stored {count} jobs; {left:.1f} s before they are due", flush=True)
    if left < 2:
        print("storing the jobs took too long for the lead", file=sys.stderr)
        sys.exit(3)
    scheduler.resume()
    for _ in range(count):
        done.acquire()
    scheduler.shutdown(wait=True)
    if failed:
        print(f"{len(failed)} jobs failed, the first: {failed[0]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
