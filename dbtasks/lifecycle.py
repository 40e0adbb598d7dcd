"""Verbs that chain the server and the migrations: init, init-db, volume-recreate."""

from __future__ import annotations

import dataclasses

from dbtasks import migrations, schema_load, server
from dbtasks.config import Settings
from dbtasks.data import seed as seed_mod
from dbtasks.safety import guard, protection, require_own_server


@dataclasses.dataclass
class InitResult:
    server: server.ServerStatus
    migrate: migrations.MigrateResult | schema_load.LoadResult  # LoadResult: built from schema.sql
    seeded: dict[str, int] | None  # None: no seed configured, demo data skipped
    status: migrations.Status


def init_db(settings: Settings) -> tuple[server.ServerStatus, migrations.MigrateResult | schema_load.LoadResult]:
    """Start the database server and bring the database to head.

    A new, empty database is built from the checked-in schema.sql when it is
    current and ``schema_load`` is ``auto`` (the default); otherwise, and on
    any database that already holds a schema, the migrations are replayed
    (:mod:`dbtasks.schema_load`).
    """
    started = server.start_db(settings, create_missing=not protection(settings).protected)
    if schema_load.should_load(settings) is not None:
        return started, schema_load.schema_load(settings)
    return started, migrations.upgrade(settings)


def init(settings: Settings) -> InitResult:
    """Everything a newcomer needs: start, migrate to head, load demo data, status.

    Without a seed configured (DBTASKS_SEED, seed in [tool.dbtasks]) the demo
    data step is skipped (``seeded`` is None), so no project runs the kit's own.
    """
    started, migrated = init_db(settings)
    seeded = seed_mod.seed(settings) if settings.seed else None
    return InitResult(started, migrated, seeded, migrations.status(settings))


def volume_recreate(settings: Settings, confirm: str | None = None, ask=None) -> tuple[server.ServerStatus, migrations.MigrateResult]:
    """Destroy the server's data, start afresh and migrate to head (protected).

    Only ever the project's own local or docker server: any other target
    (DATABASE_URL, ENV) is refused before anything changes.
    """
    require_own_server(settings, "destroy and recreate the database")
    guard(settings, "destroy and recreate the database", confirm, ask)
    backend = server.get_server(settings)
    backend.destroy()
    started = backend.start()
    # Confirmed once above; the upgrade must not ask again.
    return started, migrations.upgrade(settings, confirm=settings.database_name)
