"""The one error the build context raises.

::

    ExecutorError
    └── ContextError   a context, ignore file or COPY source that cannot be used
"""

from __future__ import annotations

from executor.errors import ExecutorError


class ContextError(ExecutorError):
    """A build context, ``.dockerignore`` pattern or COPY source that cannot be used.

    Always permanent: the same context fails the same way on every retry.
    """
