"""The schema you can see: a Mermaid ER diagram and a schema.sql from the live catalog.

``regenerate-db-diagram`` migrates a scratch database to head (so the result
depends on the migrations only, never on what a developer's database happens
to hold), reads its catalog with six set-based ``pg_catalog`` queries and
writes, into ``docs/database/``:

- ``diagram.mmd``: a Mermaid ``erDiagram``. Every table with its columns and
  types; ``PK``, ``FK`` and ``UK`` markers; ``NOT NULL`` and enum values in
  the attribute comment; one relationship per foreign key, its cardinality
  derived from the catalog: the referenced side is *exactly one* when every
  foreign-key column is NOT NULL and *zero or one* otherwise; the referencing
  side is *zero or one* when the foreign-key columns are unique (they cover a
  primary key, unique constraint or unique index) and *zero or more*
  otherwise. A foreign key inside the referencing table's primary key is an
  identifying relationship (solid line), any other a dashed one.
- ``schema.sql``: ``pg_dump --schema-only`` normalized so it depends on the
  schema only: no version banner, no ``SET`` preamble, no ``\\restrict`` keys,
  no owners or privileges unless asked for, collapsed blank lines. Like Rails'
  ``structure.sql``, a pull request shows the schema change next to the
  migration that makes it.
- ``diagram.svg``: the same tables drawn by Graphviz ``dot`` from a DOT graph
  (Mermaid needs a JavaScript renderer), when ``dot`` is installed. The SVG
  records the SHA-256 of its DOT source, so ``check-db-docs``
  (:mod:`dbtasks.checks.docs`) tells a stale picture whatever Graphviz
  version drew it; it compares the SVG only where ``dot`` is installed (only
  ``dot`` can redraw it) and says so otherwise.
- the project's ``README.md``, when it marks a place for the diagram with
  ``<!-- dbtasks:diagram:begin -->`` and ``<!-- dbtasks:diagram:end -->``
  lines: the text between them becomes diagram.mmd in a ```mermaid fence.

Everything is sorted and free of timestamps and database names, so running it
twice gives identical bytes and a diff shows only real change.

Which tables: every user schema (or the ``schemas`` given), minus tables owned
by extensions and partitions (their parent is drawn), filtered by ``include``
and ``exclude`` glob patterns matched against ``table`` and ``schema.table``.
``alembic_version`` is left out unless asked for. Defaults can be kept in
``[tool.dbtasks.diagram]`` of pyproject.toml (``output_dir``, ``schemas``,
``include``, ``exclude``, ``alembic_version``, ``owners``, ``privileges``,
``svg``); flags override them.

One module per concern; this package only gathers their public names:

- :mod:`~dbtasks.diagram.options`: :class:`DocsOptions` and :func:`docs_options`
  (``[tool.dbtasks.diagram]`` and flags), :class:`DocsError`.
- :mod:`~dbtasks.diagram.catalog`: the model (:class:`Column`, :class:`Table`,
  :class:`Relationship`, :class:`Schema`), :func:`build_schema` and
  :func:`read_catalog` (the ``pg_catalog`` queries).
- :mod:`~dbtasks.diagram.mermaid`: :func:`render_mermaid` (diagram.mmd).
- :mod:`~dbtasks.diagram.graphviz`: :func:`render_dot`, :func:`render_svg`
  and the digests (diagram.svg).
- :mod:`~dbtasks.diagram.schema_sql`: :func:`dump_schema` (schema.sql).
- :mod:`~dbtasks.diagram.readme`: the README's marked Mermaid block.
- :mod:`~dbtasks.diagram.docs`: the source database, :func:`generate`,
  :func:`regenerate_db_diagram` and :func:`compare_docs`.
"""

from __future__ import annotations

from dbtasks.diagram.catalog import Column, Relationship, Schema, Table, build_schema, display_type, read_catalog
from dbtasks.diagram.docs import (
    DIAGRAM_FILE,
    SCHEMA_FILE,
    SVG_FILE,
    DocsComparison,
    GeneratedDocs,
    RegenerateResult,
    StaleFile,
    WrittenFile,
    compare_docs,
    generate,
    output_dir,
    regenerate_db_diagram,
    source_database,
)
from dbtasks.diagram.graphviz import GRAPHVIZ_HINT, dot_digest, find_dot, render_dot, render_svg, svg_digest
from dbtasks.diagram.mermaid import entity_name, render_mermaid
from dbtasks.diagram.options import REGENERATE, DocsError, DocsOptions, docs_options
from dbtasks.diagram.readme import BEGIN, END, README_FILE, ReadmeMarkerError, find_blocks
from dbtasks.diagram.schema_sql import SCHEMA_HEADER, choose_pg_dump, dump_schema, normalize_dump, pg_dump_command

__all__ = [
    "Column", "Relationship", "Schema", "Table", "build_schema", "display_type", "read_catalog",
    "DIAGRAM_FILE", "SCHEMA_FILE", "SVG_FILE", "DocsComparison", "GeneratedDocs", "RegenerateResult",
    "StaleFile", "WrittenFile", "compare_docs", "generate", "output_dir", "regenerate_db_diagram",
    "source_database",
    "GRAPHVIZ_HINT", "dot_digest", "find_dot", "render_dot", "render_svg", "svg_digest",
    "entity_name", "render_mermaid",
    "REGENERATE", "DocsError", "DocsOptions", "docs_options",
    "BEGIN", "END", "README_FILE", "ReadmeMarkerError", "find_blocks",
    "SCHEMA_HEADER", "choose_pg_dump", "dump_schema", "normalize_dump", "pg_dump_command",
]
