"""Load a definitions directory into a validated, resolved `Definitions` (SPEC §2).

Every file is read, every rule checked, and every problem reported at once as
`path:line:column: message`; a single problem anywhere refuses the whole directory, so
nothing half-valid is ever applied. Rules about one item live in `features.validation`;
the rules across items and files (names, references, columns, source keys) live here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from features.column_checks import ColumnDraft
from features.errors import DefinitionError, Problem
from features.model import (
    NUMERIC_DTYPES,
    ORDERED_DTYPES,
    Definitions,
    Entity,
    FeatureView,
    Source,
    did_you_mean,
)
from features.validation import (
    ID_DTYPES,
    EntityDraft,
    FeatureDraft,
    SourceDraft,
    ViewDraft,
    read_entity,
    read_source,
    read_view,
)
from features.yaml_fields import describe, suggest
from features.yaml_source import FileProblems, Pos, item_pos, key_pos, node_pos, read_yaml

TOP_LEVEL = ("entities", "sources", "feature_views")
SUFFIXES = (".yaml", ".yml")
_Named = TypeVar("_Named", EntityDraft, SourceDraft, ViewDraft)
_Model = TypeVar("_Model", Entity, Source, FeatureView)
# function -> the column dtypes it accepts (None: any dtype)
FUNCTION_DTYPES: dict[str, frozenset[str] | None] = {
    "count": None,
    "first": None,
    "last": None,
    "last_n": None,
    "sum": NUMERIC_DTYPES,
    "mean": NUMERIC_DTYPES,
    "stddev": NUMERIC_DTYPES,
    "min": ORDERED_DTYPES,
    "max": ORDERED_DTYPES,
}


@dataclass
class _Repository:
    """Everything read from the files, in file order, before the cross-file rules."""

    files: list[FileProblems] = field(default_factory=list)
    entities: list[EntityDraft] = field(default_factory=list)
    sources: list[SourceDraft] = field(default_factory=list)
    views: list[ViewDraft] = field(default_factory=list)
    # top-level lists that could not be read whole: a name missing from them is not news
    incomplete: set[str] = field(default_factory=set)


def load_definitions(path: str | Path) -> Definitions:
    """Load and validate a definitions directory (every `*.yaml`/`*.yml`) or one file.

    Raises `DefinitionError` listing every problem of every file, sorted by location.
    """
    repo = _Repository()
    for file, display in _definition_files(path):
        out = FileProblems(display)
        repo.files.append(out)
        doc = read_yaml(file, display, out)
        if out.problems:
            repo.incomplete.update(TOP_LEVEL)
        elif doc is not None:
            _read_document(out, doc, repo)
    entities = _unique(repo.entities, "entity", "entities", repo.incomplete)
    sources = _unique(repo.sources, "source", "sources", repo.incomplete)
    views = _unique(repo.views, "feature view", "feature_views", repo.incomplete)
    for view in repo.views:
        _check_view_references(view, entities, sources, repo.incomplete)
    keys = _resolve_source_keys(sources, views, entities, repo.incomplete)
    problems = [p for out in repo.files for p in out.problems]
    if problems:
        raise DefinitionError(problems)
    return _build(entities, sources, views, keys)


def _definition_files(path: str | Path) -> list[tuple[Path, str]]:
    """The files to read with their display paths: a directory's YAML files by name, or one."""
    root = Path(path)
    shown = os.fspath(path)
    if root.is_dir():
        names = sorted(p.name for p in root.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not names:
            raise DefinitionError(
                [Problem(shown, 1, 1, "no definition files (*.yaml, *.yml) in this directory")]
            )
        return [(root / name, os.path.join(shown, name)) for name in names]
    if not root.exists():
        raise DefinitionError([Problem(shown, 1, 1, "no such definitions file or directory")])
    return [(root, shown)]


def _read_document(out: FileProblems, doc: Any, repo: _Repository) -> None:
    """Read the three top-level lists of one file."""
    if not isinstance(doc, CommentedMap):
        out.add(
            node_pos(doc),
            "a definition file must be a mapping with 'entities', 'sources' and/or "
            f"'feature_views', got {describe(doc)}",
        )
        repo.incomplete.update(TOP_LEVEL)
        return
    for key, value in doc.items():
        if key not in TOP_LEVEL:
            out.add(
                key_pos(doc, key), f"unknown top-level key {key!r}{suggest(str(key), TOP_LEVEL)}"
            )
            repo.incomplete.update(TOP_LEVEL)
            continue
        if value is None:
            continue
        if not isinstance(value, CommentedSeq):
            out.add(key_pos(doc, key), f"{key!r} must be a list, got {describe(value)}")
            repo.incomplete.add(key)
            continue
        for i, item in enumerate(value):
            if not isinstance(item, CommentedMap):
                pos = item_pos(value, i)
                out.add(pos, f"{key} item #{i + 1} must be a mapping, got {describe(item)}")
                repo.incomplete.add(key)
            elif key == "entities":
                repo.entities.append(read_entity(out, item, i))
            elif key == "sources":
                repo.sources.append(read_source(out, item, i))
            else:
                repo.views.append(read_view(out, item, i))


def _where(out: FileProblems, pos: Pos) -> str:
    return f"{out.path}:{pos[0]}:{pos[1]}"


def _unique(
    drafts: list[_Named], kind: str, top_level: str, incomplete: set[str]
) -> dict[str, _Named]:
    """Drafts by name (the first one wins); every later one with the same name is a problem."""
    named: dict[str, _Named] = {}
    for draft in drafts:
        if draft.name is None:
            incomplete.add(top_level)
            continue
        first = named.get(draft.name)
        if first is None:
            named[draft.name] = draft
        else:
            draft.out.add(
                draft.name_pos,
                f"duplicate {kind} name {draft.name!r} "
                f"(first defined at {_where(first.out, first.name_pos)})",
            )
    return named


def _check_view_references(
    view: ViewDraft,
    entities: dict[str, EntityDraft],
    sources: dict[str, SourceDraft],
    incomplete: set[str],
) -> None:
    """The view's entity and source exist, the join keys are source columns, and every
    feature's column exists with a dtype its function accepts."""
    what = view.what
    entity = entities.get(view.entity) if view.entity is not None else None
    source = sources.get(view.source) if view.source is not None else None
    if entity is None and view.entity is not None and "entities" not in incomplete:
        hint = did_you_mean(view.entity, entities)
        view.out.add(view.entity_pos, f"{what}: unknown entity {view.entity!r}{hint}")
    if source is None and view.source is not None and "sources" not in incomplete:
        hint = did_you_mean(view.source, sources)
        view.out.add(view.source_pos, f"{what}: unknown source {view.source!r}{hint}")
    if source is None or source.columns is None:
        return
    columns = source.columns
    if entity is not None and entity.join_keys is not None:
        for jk in entity.join_keys:
            col = columns.get(jk)
            if col is None:
                view.out.add(
                    view.source_pos,
                    f"{what}: join key {jk!r} of entity {entity.name!r} is not a column of "
                    f"source {source.name!r}",
                )
            elif col.nullable or (col.dtype is not None and col.dtype not in ID_DTYPES):
                view.out.add(
                    view.source_pos,
                    f"{what}: join key column {jk!r} of source {source.name!r} must be a "
                    f"non-nullable string or int (it is {_column_kind(col)})",
                )
    for feat in view.features:
        _check_feature_column(view, feat, source.name or "", columns)


def _one_of(words: list[str]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    return " or ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} or {words[-1]}"


def _column_kind(col: ColumnDraft) -> str:
    return f"{'nullable ' if col.nullable else ''}{col.dtype}"


def _check_feature_column(
    view: ViewDraft, feat: FeatureDraft, source: str, columns: dict[str, ColumnDraft]
) -> None:
    """A feature's column is in its source's schema, of a dtype its function accepts."""
    if feat.column is None:
        return
    what = feat.what
    col = columns.get(feat.column)
    if col is None:
        view.out.add(
            feat.column_pos,
            f"{what}: column {feat.column!r} is not in the schema of source {source!r}"
            f"{did_you_mean(feat.column, columns)}",
        )
        return
    accepted = FUNCTION_DTYPES.get(feat.function or "")
    if feat.function is None or accepted is None or col.dtype is None:
        return
    if col.dtype not in accepted:
        view.out.add(
            feat.column_pos,
            f"{what}: function {feat.function!r} needs a column of dtype "
            f"{_one_of(sorted(accepted))}; {feat.column!r} is {col.dtype}",
        )


def _resolve_source_keys(
    sources: dict[str, SourceDraft],
    views: dict[str, ViewDraft],
    entities: dict[str, EntityDraft],
    incomplete: set[str],
) -> dict[str, tuple[str, ...]]:
    """Each source's key: as written, else the join keys of the entity of its views."""
    keys: dict[str, tuple[str, ...]] = {}
    for name, source in sources.items():
        if source.key is not None:
            keys[name] = source.key
            continue
        if source.model is None or incomplete & {"entities", "feature_views"}:
            continue  # already refused; a guess at the key would only add noise
        candidates: dict[tuple[str, ...], str] = {}
        unresolved = False  # a view of this source whose entity is unknown or broken
        for view in views.values():
            if view.source != name:
                continue
            entity = entities.get(view.entity or "")
            if entity is None or entity.join_keys is None:
                unresolved = True
            else:
                candidates.setdefault(entity.join_keys, view.name or "")
        if unresolved and len(candidates) < 2:
            continue  # that entity's problem is reported; a guess would only add noise
        if len(candidates) == 1:
            keys[name] = next(iter(candidates))
        elif not candidates:
            source.out.add(
                source.name_pos,
                f"source {name!r}: no 'key' given and no feature view uses it to infer one; "
                "set 'key' to the columns that partition its events",
            )
        else:
            listed = "; ".join(f"{v!r} uses ({', '.join(k)})" for k, v in candidates.items())
            source.out.add(
                source.name_pos,
                f"source {name!r}: no 'key' given and its views' entities have different "
                f"join keys ({listed}); set 'key'",
            )
    return keys


def _build(
    entities: dict[str, EntityDraft],
    sources: dict[str, SourceDraft],
    views: dict[str, ViewDraft],
    keys: dict[str, tuple[str, ...]],
) -> Definitions:
    """The resolved model; only called when no problem was found, so every model is set."""
    return Definitions(
        entities={n: _resolved(entities[n].model, n) for n in sorted(entities)},
        sources={n: replace(_resolved(sources[n].model, n), key=keys[n]) for n in sorted(sources)},
        views={n: _resolved(views[n].model, n) for n in sorted(views)},
    )


def _resolved(model: _Model | None, name: str) -> _Model:
    """A draft's model; a missing one without a reported problem is a bug in the rules."""
    if model is None:
        msg = f"internal error: {name!r} is unresolved although no problem was reported"
        raise RuntimeError(msg)
    return model
