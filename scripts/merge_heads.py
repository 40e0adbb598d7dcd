#!/usr/bin/env python3
"""Write a merge revision over all heads (``dbtasks merge-heads``).

Usage: python scripts/merge_heads.py [-m "merge heads"] [-c alembic.ini]
"""

from dbtasks.cli import main

if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    globals_, rest = [], []
    while args:
        arg = args.pop(0)
        if arg in ("-c", "--config") and args:
            globals_ += [arg, args.pop(0)]
        else:
            rest.append(arg)
    main([*globals_, "merge-heads", *rest])
