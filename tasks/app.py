"""The worker's Celery app: the producer's app (farm.dispatch) with the build task on it."""

from __future__ import annotations

from celery import Celery

from farm.config import Settings
from farm.dispatch import celery_app


def create_app(settings: Settings) -> Celery:
    """A Celery app for a worker, with the build task registered on it."""
    app = celery_app(settings)
    from tasks.build import register

    register(app, settings)
    return app
