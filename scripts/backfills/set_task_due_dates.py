"""Example backfill: give every open task without a due date one, two weeks after it was created.

Run it with ``make run-script SCRIPT=scripts/backfills/set_task_due_dates.py``
(add ``ENV=prod`` for production, ``DRY_RUN=1`` to only count). It uses the
batched helper: short transactions by primary-key ranges, a checkpoint so a
killed run resumes where it stopped, a progress bar with rows/s and ETA.
"""

from dbtasks.data.backfill import batched_update

# The helper opens its own short transactions, one per batch.
TRANSACTION = False


def main(settings, progress=None, dry_run=False):
    result = batched_update(
        settings,
        "tasks",
        set_sql="due_at = created_at + interval '14 days'",
        where="due_at is null and status <> 'done'",
        name="set_task_due_dates",
        batch_size=500,
        pause=0.0,
        dry_run=dry_run,
        progress=progress,
    )
    verb = "would update" if result.dry_run else "updated"
    if result.already_finished:
        return f"{result.name}: already finished earlier; nothing to do"
    return f"{result.name}: {verb} {result.rows} task(s) in {result.batches} batch(es)"
