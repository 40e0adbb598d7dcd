#!/usr/bin/env python3
"""Format Alembic revision files: autoflake, isort, black (``dbtasks format-revision``).

Usage: python scripts/format_revision.py alembic/versions/<file>.py ...

alembic.ini runs the same code as its post-write hook through
``python -m dbtasks format-revision``; this script is for projects whose hook
calls a file by path (``type = exec``).
"""

from dbtasks.cli import main

if __name__ == "__main__":
    import sys

    main(["format-revision", *sys.argv[1:]])
