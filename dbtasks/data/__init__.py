"""Data workflows: seed, dump, restore, backup, backfill, cleanup."""
