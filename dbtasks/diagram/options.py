"""What the schema docs draw and where: :class:`DocsOptions`, built from the
settings (``[tool.dbtasks.diagram]``, their variables and flags).

Also the few names every module of :mod:`dbtasks.diagram` shares: the public
schema, ``alembic_version``, the recipe a generated file names in its header
(fixed text, so the files do not depend on who generated them), and
:class:`DocsError`.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from dbtasks.config import Settings
from dbtasks.errors import ConfigError, DbtasksError

ALEMBIC_VERSION = "alembic_version"
DEFAULT_SCHEMA = "public"

REGENERATE = "make regenerate-db-diagram"  # named in the generated files' headers


class DocsError(DbtasksError):
    """The diagram or schema.sql could not be generated."""


@dataclasses.dataclass(frozen=True)
class DocsOptions:
    """What to draw and where. Build it with :func:`docs_options`."""

    output_dir: str = Settings.docs_dir
    schemas: tuple[str, ...] = ()  # empty: every user schema
    include: tuple[str, ...] = ()  # glob patterns; empty: every table
    exclude: tuple[str, ...] = ()
    alembic_version: bool = False  # draw and dump the alembic_version table
    owners: bool = False  # keep OWNER TO in schema.sql
    privileges: bool = False  # keep GRANT/REVOKE in schema.sql
    svg: bool | None = None  # None: render diagram.svg when dot is installed

    def selects(self, schema: str, table: str) -> bool:
        """True when ``schema.table`` is drawn (schema selection is done by the query)."""
        names = (table, f"{schema}.{table}")
        if table == ALEMBIC_VERSION and not self.alembic_version:
            return False
        if self.include and not any(fnmatch.fnmatchcase(n, p) for p in self.include for n in names):
            return False
        return not any(fnmatch.fnmatchcase(n, p) for p in self.exclude for n in names)


def docs_options(settings: Settings) -> DocsOptions:
    """What to draw and where, from the settings (``[tool.dbtasks.diagram]``, variables, flags)."""
    if not settings.docs_dir.strip():
        raise ConfigError("the diagram output directory is empty", f"use e.g. {Settings.docs_dir}")
    return DocsOptions(
        output_dir=settings.docs_dir,
        schemas=settings.diagram_schemas,
        include=settings.diagram_include,
        exclude=settings.diagram_exclude,
        alembic_version=settings.diagram_alembic_version,
        owners=settings.diagram_owners,
        privileges=settings.diagram_privileges,
        svg=settings.diagram_svg,
    )
