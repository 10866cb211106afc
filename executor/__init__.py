"""The userspace Dockerfile executor: a complete tool with no Celery, Redis or daemon."""

from executor import errors

__all__ = ["errors"]
