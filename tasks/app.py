"""The Celery app, made from Settings: JSON only, late acks, one build at a time."""

from __future__ import annotations

from celery import Celery

from farm.config import Settings


def create_app(settings: Settings) -> Celery:
    """A Celery app for the farm; the build task is registered on it.

    Delivery guarantees: a build is acknowledged only after it ends (acks_late), and
    given back to the queue if its worker dies (reject_on_worker_lost); a worker takes
    one build at a time and reserves no others (prefetch 1). Redis redelivers an
    unacknowledged build after ``visibility_timeout``, which is longer than the hard
    limit, which is longer than the soft limit, which is longer than the executor's
    own timeout (Settings checks the order), so a slow build is never delivered twice.
    """
    app = Celery("farm", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # outcomes live in the farm's own records
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_default_queue=settings.queue,
        task_create_missing_queues=True,
        task_soft_time_limit=settings.soft_time_limit_seconds,
        task_time_limit=settings.hard_time_limit_seconds,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    from tasks.build import register

    register(app, settings)
    return app
