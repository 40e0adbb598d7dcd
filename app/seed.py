"""Demo data for the example application (``make db-seed``).

Deterministic (a fixed random seed) and idempotent: a database that already
holds the demo users is left alone. About 600 rows across every table, so
diagrams, dumps and checks have something to work on.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, insert, select, func

from app.models import Comment, Project, Tag, Task, TaskStatus, User, task_tags

DEMO_DOMAIN = "example.test"


def seed(connection: Connection) -> dict[str, int]:
    """Insert the demo rows; returns rows inserted per table (empty if already seeded)."""
    already = connection.execute(
        select(func.count()).select_from(User).where(User.email.like(f"%@{DEMO_DOMAIN}"))
    ).scalar()
    if already:
        return {}
    rng = random.Random(20261121)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    words = "alpha beta gamma delta migrate index backfill schema deploy review fix ship".split()

    users = [
        {"email": f"user{i:03d}@{DEMO_DOMAIN}", "name": f"User {i:03d}", "created_at": base + timedelta(days=i)}
        for i in range(60)
    ]
    user_ids = connection.execute(insert(User).returning(User.id), users).scalars().all()

    projects = [
        {
            "owner_id": rng.choice(user_ids),
            "name": f"Project {' '.join(rng.sample(words, 2))} {i}",
            "description": None if i % 3 == 0 else f"Demo project number {i}",
            "archived": i % 7 == 0,
            "created_at": base + timedelta(days=30 + i),
        }
        for i in range(30)
    ]
    project_ids = connection.execute(insert(Project).returning(Project.id), projects).scalars().all()

    statuses = list(TaskStatus)
    tasks = [
        {
            "project_id": rng.choice(project_ids),
            "assignee_id": None if i % 4 == 0 else rng.choice(user_ids),
            "title": f"{rng.choice(words).capitalize()} {rng.choice(words)} #{i}",
            "status": statuses[i % len(statuses)],
            "due_at": None if i % 5 == 0 else base + timedelta(days=60 + i),
            "created_at": base + timedelta(days=40, hours=i),
        }
        for i in range(200)
    ]
    task_ids = connection.execute(insert(Task).returning(Task.id), tasks).scalars().all()

    comments = [
        {
            "task_id": rng.choice(task_ids),
            "author_id": rng.choice(user_ids),
            "body": f"Comment {i}: {' '.join(rng.choices(words, k=6))}",
            "created_at": base + timedelta(days=50, minutes=7 * i),
        }
        for i in range(250)
    ]
    connection.execute(insert(Comment), comments)

    tags = [{"name": w} for w in words]
    tag_ids = connection.execute(insert(Tag).returning(Tag.id), tags).scalars().all()

    pairs = sorted({(rng.choice(task_ids), rng.choice(tag_ids)) for _ in range(120)})
    connection.execute(insert(task_tags), [{"task_id": t, "tag_id": g} for t, g in pairs])
    return {
        "users": len(users),
        "projects": len(projects),
        "tasks": len(tasks),
        "comments": len(comments),
        "tags": len(tags),
        "task_tags": len(pairs),
    }
