"""The build context: a directory or tarball, ``.dockerignore``, COPY sources, digests.

::

    ExecutorError
    └── ContextError   a context, ignore file or COPY source that cannot be used
"""

from executor.context.archive import UnpackLimits, unpack_tar
from executor.context.build_context import BuildContext, context_digest, open_context
from executor.context.digest import digest_files, file_digest
from executor.context.errors import ContextError
from executor.context.ignore import IgnoreMatcher, Pattern, parse_dockerignore, parse_patterns
from executor.context.source import ContextFile, FileKind, SourceMatch

__all__ = [
    "BuildContext",
    "ContextError",
    "ContextFile",
    "FileKind",
    "IgnoreMatcher",
    "Pattern",
    "SourceMatch",
    "UnpackLimits",
    "context_digest",
    "digest_files",
    "file_digest",
    "open_context",
    "parse_dockerignore",
    "parse_patterns",
    "unpack_tar",
]
