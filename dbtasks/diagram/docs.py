"""Generating the schema docs, writing them, and comparing them with the checked-in files.

:func:`source_database` gives the database to draw: a scratch database
migrated to head (so the result depends on the migrations only, never on what
a developer's database happens to hold) or, with ``from_database``, the
configured one. :func:`generate` reads its catalog and renders every file in
memory; :func:`regenerate_db_diagram` writes the ones whose content changed
(nothing unless every file could be generated) and refreshes the marked
Mermaid block of the project's README.md (:mod:`dbtasks.diagram.readme`);
:func:`compare_docs` reports, as plain data, which checked-in files are
missing or stale. :mod:`dbtasks.checks.docs` turns that report into the
``docs`` check.

diagram.svg is compared only where Graphviz ``dot`` is installed, since only
``dot`` can redraw it: elsewhere a note says it was not compared. Where it is
compared, its staleness is decided by the SHA-256 of the DOT graph it was
drawn from (stamped into the SVG by :func:`~dbtasks.diagram.graphviz.render_svg`),
never by its bytes, so two Graphviz versions laying out the same graph
differently agree that it is current.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from dbtasks.config import Settings, shown_path
from dbtasks.database import connect, connection, scratch
from dbtasks.diagram.catalog import Schema, read_catalog
from dbtasks.diagram.graphviz import GRAPHVIZ_HINT, dot_digest, find_dot, render_dot, render_svg, svg_digest
from dbtasks.diagram.mermaid import render_mermaid
from dbtasks.diagram.options import DocsError, DocsOptions, docs_options
from dbtasks.diagram.readme import README_FILE, BEGIN, Block, find_blocks, read_readme, refresh, stale_blocks, write_readme
from dbtasks.diagram.schema_sql import dump_schema, history_fingerprint, stamp_schema
from dbtasks.errors import UsageError
from dbtasks.migrations import current_revisions, script_directory, upgrade_scratch
from dbtasks.safety import scratch_home

DIAGRAM_FILE = "diagram.mmd"
SCHEMA_FILE = "schema.sql"
SVG_FILE = "diagram.svg"


# -- the source database --------------------------------------------------------


@contextlib.contextmanager
def source_database(settings: Settings, from_database: bool = False, script: ScriptDirectory | None = None) -> Iterator[URL]:
    """The database to draw: the configured one, or a scratch one migrated to head.

    The scratch database lives on the configured database's server (the local
    one after ``make init``), starts from ``template0`` and is dropped
    afterwards, whatever happens.
    """
    if from_database:
        with connection(settings):
            pass
        yield settings.url
        return
    # A protected target's server never gets a scratch database: the local server or TEST_DATABASE_URL does.
    home = scratch_home(settings, "the docs' scratch database")
    # template0, not template1: whatever a machine added to template1 must not show up in the docs
    with scratch(home, "template0", "dbtasks_docs", why="the docs are drawn from a scratch database (or set FROM_DATABASE=1, --from-database)") as url:
        upgrade_scratch(settings, url, "head", script=script)
        yield url


# -- the verbs ------------------------------------------------------------------


@dataclasses.dataclass
class GeneratedDocs:
    """The files as they should be, in memory."""

    schema: Schema
    files: dict[str, str]  # file name -> content (diagram.mmd, schema.sql)
    dot: str
    svg: str | None = None  # rendered when asked and dot is installed
    notes: list[str] = dataclasses.field(default_factory=list)


def generate(settings: Settings, options: DocsOptions | None = None, from_database: bool = False, render: bool = True) -> GeneratedDocs:
    """Read the schema (scratch database at head, or the configured one) and render every file."""
    options = options or docs_options(settings)
    script = script_directory(settings)
    with source_database(settings, from_database, script) as url:
        with connect(url) as conn:
            schema = read_catalog(conn, options)
            conn.rollback()
        sql = dump_schema(settings, url, schema, options)
    # The revision(s) the schema is at, and a hash of the revision files: db-schema-load trusts schema.sql by them.
    revisions = current_revisions(settings) if from_database else script.get_heads()
    sql = stamp_schema(sql, revisions, history_fingerprint(script)[0])
    docs = GeneratedDocs(schema, {DIAGRAM_FILE: render_mermaid(schema), SCHEMA_FILE: sql}, render_dot(schema))
    if render and options.svg is not False:
        dot = find_dot()
        if dot:
            docs.svg = render_svg(docs.dot, dot)
        elif options.svg:
            raise DocsError("svg = true, but Graphviz `dot` is not installed", GRAPHVIZ_HINT)
        else:
            docs.notes.append(f"{SVG_FILE} not rendered: Graphviz `dot` is not installed; {GRAPHVIZ_HINT}")
    return docs


@dataclasses.dataclass
class WrittenFile:
    path: Path
    status: str  # written, unchanged, stale (could not be refreshed)


@dataclasses.dataclass
class RegenerateResult:
    files: list[WrittenFile]
    tables: int
    relationships: int
    notes: list[str]


def output_dir(settings: Settings, options: DocsOptions) -> Path:
    path = settings.path(options.output_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"the diagram output directory {path} is a file", "point DBTASKS_DOCS_DIR (--output-dir) at a directory")
    return path


@dataclasses.dataclass
class Readme:
    """The project's README.md when regenerate-db-diagram looks after its marked block."""

    path: Path
    shown: str
    text: str
    blocks: list[Block]


def project_readme(settings: Settings, notes: list[str] | None = None, skipped: str = "left alone") -> Readme | None:
    """The README.md whose marked Mermaid block mirrors diagram.mmd, read and parsed.

    None when there is no README.md, when it has no markers, or when
    ``--output-dir`` sends this run's docs elsewhere (a one-off copy, e.g. of
    production's schema, is not the project's diagram; a note says so).
    Markers that do not pair up raise a one-line :class:`UsageError` before
    anything else happens.
    """
    path = settings.project_dir / README_FILE
    text = read_readme(path)
    if text is None:
        return None
    shown = shown_path(path, settings.project_dir)
    if settings.sources.get("docs_dir") == "flag":
        if notes is not None and BEGIN in text:
            notes.append(f"{shown} {skipped}: its marked diagram follows the project's docs directory, and --output-dir points this run elsewhere")
        return None
    blocks = find_blocks(text, shown)
    return Readme(path, shown, text, blocks) if blocks else None


def _write_if_changed(path: Path, content: str) -> bool:
    try:
        if path.read_text() == content:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def regenerate_db_diagram(settings: Settings, options: DocsOptions | None = None, from_database: bool = False) -> RegenerateResult:
    """Write diagram.mmd, schema.sql (and diagram.svg when dot is installed) from the schema at head.

    Also the marked Mermaid block of the project's README.md, when it has one
    (see :mod:`dbtasks.diagram.readme`). Files whose content is unchanged are
    not rewritten. Nothing is written unless every file could be generated,
    and markers that do not pair up stop the run before anything is drawn.
    """
    options = options or docs_options(settings)
    directory = output_dir(settings, options)
    notes: list[str] = []
    readme = project_readme(settings, notes)  # bad markers stop us before anything is drawn
    docs = generate(settings, options, from_database)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {directory}: {exc.strerror}", "point DBTASKS_DOCS_DIR (--output-dir) at a writable directory") from None
    written = []
    for name in (DIAGRAM_FILE, SCHEMA_FILE):
        path = directory / name
        written.append(WrittenFile(path, "written" if _write_if_changed(path, docs.files[name]) else "unchanged"))
    notes = docs.notes + notes
    svg_path = directory / SVG_FILE
    if docs.svg is not None:
        current = _read(svg_path)
        if current is not None and svg_digest(current) == dot_digest(docs.dot):
            written.append(WrittenFile(svg_path, "unchanged"))  # same picture; keep this Graphviz's layout
        else:
            _write_if_changed(svg_path, docs.svg)
            written.append(WrittenFile(svg_path, "written"))
    elif options.svg is not False and svg_path.exists() and svg_digest(_read(svg_path) or "") != dot_digest(docs.dot):
        written.append(WrittenFile(svg_path, "stale"))
        notes.append(
            f"{svg_path.name} still shows the old schema (`check-db-docs` fails on it where Graphviz `dot` "
            f"is installed, e.g. in CI); {GRAPHVIZ_HINT}"
        )
    if readme is not None:
        fresh = refresh(readme.text, docs.files[DIAGRAM_FILE], readme.blocks)
        if fresh != readme.text:
            write_readme(readme.path, fresh)
        written.append(WrittenFile(readme.path, "written" if fresh != readme.text else "unchanged"))
    return RegenerateResult(written, len(docs.schema.tables), len(docs.schema.relationships), notes)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


MAX_DIFF_LINES = 200
SVG_INSTALL = "apt install graphviz"


def unified_diff(committed: str, fresh: str, name: str) -> str:
    """A unified diff from the checked-in file to the regenerated one (long ones cut)."""
    lines = list(difflib.unified_diff(
        committed.splitlines(keepends=True), fresh.splitlines(keepends=True),
        fromfile=f"{name} (checked in)", tofile=f"{name} (regenerated)",
    ))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more diff lines\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")


@dataclasses.dataclass(frozen=True)
class StaleFile:
    """A checked-in file that differs from what would be generated now."""

    name: str  # diagram.mmd, schema.sql, diagram.svg or README.md
    path: str  # as shown: relative to the project directory when inside it
    rule: str  # missing, stale (with a diff), stale-readme (its marked block, with a diff) or stale-svg (drawn from another schema)
    message: str  # what is wrong; for a stale text file, followed by the unified diff


@dataclasses.dataclass
class DocsComparison:
    """The checked-in files against the schema: what is stale, and notes."""

    stale: list[StaleFile] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def compare_docs(settings: Settings, options: DocsOptions | None = None, from_database: bool = False) -> DocsComparison:
    """Regenerate in memory and compare with the checked-in files.

    A missing or different diagram.mmd or schema.sql is a :class:`StaleFile`
    whose message carries the unified diff, and so is a marked Mermaid block
    of README.md that differs from diagram.mmd's text. diagram.svg is
    compared only where Graphviz ``dot`` is installed (only ``dot`` can redraw
    it; elsewhere a note says it was not compared) and unless ``svg = false``:
    it is stale when the DOT digest it records differs from the regenerated
    DOT graph's, whatever Graphviz version drew it. An absent diagram.svg is
    only a note (it is optional), unless ``svg = true`` asks for it.
    """
    options = options or docs_options(settings)
    directory = output_dir(settings, options)
    result = DocsComparison()
    readme = project_readme(settings, result.notes, "not compared")  # bad markers stop us before anything is drawn
    docs = generate(settings, options, from_database, render=False)
    for name in (DIAGRAM_FILE, SCHEMA_FILE):
        path = directory / name
        shown = shown_path(path, settings.project_dir)
        committed = _read(path)
        if committed is None:
            result.stale.append(StaleFile(name, shown, "missing", f"{shown} is missing"))
        elif committed != docs.files[name]:
            diff = unified_diff(committed, docs.files[name], shown)
            result.stale.append(StaleFile(name, shown, "stale", f"{shown} is stale: it differs from the schema at head\n{diff}"))
    if readme is not None:
        for block, have, want in stale_blocks(readme.text, docs.files[DIAGRAM_FILE], readme.blocks):
            diff = unified_diff(have, want, f"{readme.shown} (the block after line {block.line})")
            message = f"{readme.shown}: the diagram between the {BEGIN} markers (line {block.line}) is stale: it differs from {DIAGRAM_FILE}\n{diff}"
            result.stale.append(StaleFile(README_FILE, readme.shown, "stale-readme", message))
    svg_path = directory / SVG_FILE
    shown = shown_path(svg_path, settings.project_dir)
    if options.svg is False:
        return result  # the project keeps no SVG (svg = false)
    if find_dot() is None:
        result.notes.append(f"{SVG_FILE} not compared: Graphviz `dot` is not installed ({SVG_INSTALL})")
        return result
    svg = _read(svg_path)
    if svg is None:
        if options.svg:
            result.stale.append(StaleFile(SVG_FILE, shown, "missing", f"{shown} is missing (svg = true)"))
        else:
            result.notes.append(f"{shown} is absent (optional; rendered when Graphviz dot is installed)")
    elif svg_digest(svg) != dot_digest(docs.dot):
        result.stale.append(StaleFile(SVG_FILE, shown, "stale-svg", f"{shown} is stale: it was drawn from another schema"))
    return result
