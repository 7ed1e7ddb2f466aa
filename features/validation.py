"""The rules of one entity, source or feature view on its own (SPEC §2, §4).

Each reader records every problem it finds and returns a draft: what could be read
(names, references, columns, with their positions) for the cross-file rules of
`features.loader`, and the resolved model object when the item itself is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from features.column_checks import ColumnDraft, read_column
from features.durations import format_duration, parse_duration
from features.model import FUNCTIONS, Entity, Feature, FeatureView, Source, did_you_mean
from features.tiles import default_granularity
from features.yaml_fields import NAME_PATTERN, NAME_RULE, Fields, describe, suggest
from features.yaml_source import FileProblems, Pos, item_pos, key_pos, node_pos

ENTITY_FIELDS = ("name", "join_keys", "description")
SOURCE_FIELDS = (
    "name", "topic", "key", "event_id", "timestamp", "allowed_lateness", "schema", "description",
)  # fmt: skip
VIEW_FIELDS = (
    "name", "entity", "source", "ttl", "owner", "tags", "description", "features",
)  # fmt: skip
FEATURE_FIELDS = ("name", "function", "column", "window", "granularity", "n")
DEFAULT_ALLOWED_LATENESS = parse_duration("1h")
ID_DTYPES = ("string", "int")
MAX_LAST_N = 100


@dataclass
class EntityDraft:
    """An entity as read; `model` is set when it is valid on its own."""

    out: FileProblems
    name: str | None
    name_pos: Pos
    join_keys: tuple[str, ...] | None
    model: Entity | None


@dataclass
class SourceDraft:
    """A source as read; `columns` is `None` when the schema is unusable.

    `model` is set when the source is valid on its own; its `key` is still empty when
    no `key` is written (the loader fills it from the views that use the source).
    """

    out: FileProblems
    name: str | None
    name_pos: Pos
    columns: dict[str, ColumnDraft] | None
    key: tuple[str, ...] | None
    model: Source | None


@dataclass
class FeatureDraft:
    """A feature as read; `function` is set only when it names a known function."""

    what: str  # how messages call it: `feature 'view:name'`
    name: str | None
    name_pos: Pos
    function: str | None
    function_pos: Pos
    column: str | None
    column_pos: Pos
    model: Feature | None


@dataclass
class ViewDraft:
    """A feature view as read, with its references and positions."""

    out: FileProblems
    what: str  # how messages call it: `feature view 'name'`
    name: str | None
    name_pos: Pos
    entity: str | None
    entity_pos: Pos
    source: str | None
    source_pos: Pos
    features: list[FeatureDraft] = field(default_factory=list)
    model: FeatureView | None = None


def _label(kind: str, node: CommentedMap, index: int) -> str:
    """How to call an item in messages: `source 'x'`, or `sources item 2` if unnamed."""
    name = node.get("name")
    if isinstance(name, str) and name.strip():
        return f"{kind} {name!r}"
    return f"{kind} #{index + 1}"


def read_entity(out: FileProblems, node: CommentedMap, index: int) -> EntityDraft:
    """Read one item of `entities`."""
    fields = Fields(out, node, _label("entity", node, index))
    before = len(out.problems)
    fields.check_keys(ENTITY_FIELDS, ("name", "join_keys"))
    name = fields.name("name")
    join_keys = fields.names("join_keys")
    description = fields.string("description") or ""
    model = None
    if len(out.problems) == before and name is not None and join_keys is not None:
        model = Entity(name, join_keys, description)
    return EntityDraft(out, name, fields.pos("name"), join_keys, model)


def read_source(out: FileProblems, node: CommentedMap, index: int) -> SourceDraft:
    """Read one item of `sources`: fields, schema, and the columns it names."""
    fields = Fields(out, node, _label("source", node, index))
    before = len(out.problems)
    fields.check_keys(SOURCE_FIELDS, ("name", "event_id", "timestamp", "schema"))
    name = fields.name("name")
    topic = fields.string("topic") or name
    key = fields.names("key")
    event_id = fields.name("event_id")
    timestamp = fields.name("timestamp")
    lateness = fields.duration("allowed_lateness", allow_zero=True)
    if lateness is None:
        lateness = DEFAULT_ALLOWED_LATENESS
    description = fields.string("description") or ""
    columns = _read_schema(fields, name or fields.what)
    if columns is not None:
        _check_source_columns(fields, columns, key, event_id, timestamp)
    draft = SourceDraft(out, name, fields.pos("name"), columns, key, None)
    if len(out.problems) == before and columns is not None:
        schema = tuple(c.column for c in columns.values() if c.column is not None)
        if name and topic and event_id and timestamp and len(schema) == len(columns):
            draft.model = Source(
                name, topic, key or (), event_id, timestamp, lateness, schema, description
            )
    return draft


def _read_schema(fields: Fields, source: str) -> dict[str, ColumnDraft] | None:
    """The `schema` mapping: column name -> column spec, in the order written."""
    node = fields.mapping("schema")
    if node is None:
        return None
    if not node:
        fields.problem(fields.pos("schema"), "'schema' must list at least one column")
        return None
    columns: dict[str, ColumnDraft] = {}
    for col_name, spec in node.items():
        pos = key_pos(node, col_name)
        if not isinstance(col_name, str) or not NAME_PATTERN.match(col_name):
            fields.problem(pos, f"invalid column name {describe(col_name)}: {NAME_RULE}")
            continue
        columns[col_name] = read_column(fields.out, source, col_name, spec, pos)
    return columns


def _check_source_columns(
    fields: Fields,
    columns: dict[str, ColumnDraft],
    key: tuple[str, ...] | None,
    event_id: str | None,
    timestamp: str | None,
) -> None:
    """event_id, timestamp and key must be non-nullable schema columns of a fitting dtype."""
    roles: list[tuple[str, str, tuple[str, ...], Pos]] = []
    if event_id is not None:
        roles.append(("event_id", event_id, ID_DTYPES, fields.pos("event_id")))
    if timestamp is not None:
        roles.append(("timestamp", timestamp, ("timestamp",), fields.pos("timestamp")))
    key_node = fields.node.get("key")
    for i, k in enumerate(key or ()):
        pos = item_pos(key_node, i) if isinstance(key_node, CommentedSeq) else fields.pos("key")
        roles.append(("key", k, ID_DTYPES, pos))
    for role, col, dtypes, pos in roles:
        draft = columns.get(col)
        if draft is None:
            hint = did_you_mean(col, columns)
            fields.problem(pos, f"{role} column {col!r} is not in the schema{hint}")
            continue
        if draft.dtype is not None and draft.dtype not in dtypes:
            fields.problem(
                pos,
                f"{role} column {col!r} must have dtype {' or '.join(dtypes)}, not {draft.dtype}",
            )
        if draft.nullable:
            fields.problem(pos, f"{role} column {col!r} must not be nullable")


def read_view(out: FileProblems, node: CommentedMap, index: int) -> ViewDraft:
    """Read one item of `feature_views` with its features (windows resolved against ttl)."""
    fields = Fields(out, node, _label("feature view", node, index))
    before = len(out.problems)
    fields.check_keys(VIEW_FIELDS, ("name", "entity", "source", "ttl", "features"))
    name = fields.name("name")
    draft = ViewDraft(
        out,
        fields.what,
        name,
        fields.pos("name"),
        fields.name("entity"),
        fields.pos("entity"),
        fields.name("source"),
        fields.pos("source"),
    )
    ttl = fields.duration("ttl")
    owner = fields.string("owner") or ""
    description = fields.string("description") or ""
    tags = _read_tags(fields)
    items = fields.items("features")
    if items is not None and not items:
        fields.problem(fields.pos("features"), "'features' must list at least one feature")
    seen: dict[str, Pos] = {}
    for i, item in enumerate(items or ()):
        pos = item_pos(items, i) if items is not None else node_pos(node)
        if not isinstance(item, CommentedMap):
            fields.problem(pos, f"features item #{i + 1} must be a mapping, got {describe(item)}")
            continue
        feat = _read_feature(out, item, name or f"#{index + 1}", i, ttl)
        if feat.name is not None:
            if feat.name in seen:
                first = seen[feat.name]
                out.add(
                    feat.name_pos,
                    f"{fields.what}: duplicate feature name {feat.name!r} "
                    f"(first defined at line {first[0]})",
                )
            else:
                seen[feat.name] = feat.name_pos
        draft.features.append(feat)
    features = [f.model for f in draft.features]
    ok = len(out.problems) == before and items is not None and all(features)
    if ok and ttl is not None and name and draft.entity and draft.source:
        draft.model = FeatureView(
            name,
            draft.entity,
            draft.source,
            ttl,
            tuple(f for f in features if f is not None),
            owner,
            tags or (),
            description,
        )
    return draft


def _read_tags(fields: Fields) -> tuple[tuple[str, str], ...] | None:
    """`tags`: a mapping of names to strings (numbers are taken as their text)."""
    node = fields.mapping("tags")
    if node is None:
        return None
    tags: list[tuple[str, str]] = []
    for key, value in node.items():
        if not isinstance(key, str) or isinstance(value, bool):
            ok = False
        else:
            ok = isinstance(value, str | int | float)
        if not ok:
            fields.problem(
                key_pos(node, key),
                f"tag {describe(key)} must map a string to a string, got {describe(value)}",
            )
            continue
        tags.append((str(key), str(value)))
    return tuple(sorted(tags))


def _read_feature(
    out: FileProblems, node: CommentedMap, view: str, index: int, ttl: int | None
) -> FeatureDraft:
    """Read one feature of `view`; `ttl` (µs, `None` if invalid) bounds and defaults window."""
    raw_name = node.get("name")
    label = raw_name if isinstance(raw_name, str) and raw_name.strip() else f"#{index + 1}"
    fields = Fields(out, node, f"feature '{view}:{label}'")
    before = len(out.problems)
    fields.check_keys(FEATURE_FIELDS, ("name", "function"))
    name = fields.name("name")
    function = fields.string("function")
    if function is not None and function not in FUNCTIONS:
        fields.problem(
            fields.pos("function"),
            f"unknown function {function!r}{suggest(function, FUNCTIONS)}",
        )
        function = None
    column = fields.name("column")
    if function is not None and function != "count" and not fields.has("column"):
        fields.problem(node_pos(node), f"function {function!r} needs a 'column'")
    n = _read_n(fields, function)
    window, granularity = _read_window(fields, ttl)
    draft = FeatureDraft(
        fields.what,
        name,
        fields.pos("name"),
        function,
        fields.pos("function"),
        column,
        fields.pos("column"),
        None,
    )
    if len(out.problems) == before and name and function and window and granularity:
        draft.model = Feature(name, function, column, window, granularity, n)
    return draft


def _read_n(fields: Fields, function: str | None) -> int | None:
    """`n`: required for last_n (1..100), refused for every other function."""
    if function is None:
        return fields.integer("n")
    if function != "last_n":
        if fields.has("n"):
            fields.problem(
                fields.key_pos("n"), f"'n' only applies to function 'last_n', not {function!r}"
            )
        return None
    if not fields.has("n"):
        fields.problem(fields.pos("function"), "function 'last_n' needs 'n' (1..100)")
        return None
    n = fields.integer("n")
    if n is not None and not 1 <= n <= MAX_LAST_N:
        fields.problem(fields.pos("n"), f"'n' must be between 1 and {MAX_LAST_N}, got {n}")
        return None
    return n


def _read_window(fields: Fields, ttl: int | None) -> tuple[int | None, int | None]:
    """The window (default: the view's ttl, at most ttl) and its tile size, in µs."""
    window = fields.duration("window") if fields.has("window") else ttl
    if window is not None and ttl is not None and window > ttl:
        fields.problem(
            fields.pos("window"),
            f"window {format_duration(window)} is longer than the view's ttl "
            f"{format_duration(ttl)}",
        )
    if not fields.has("granularity"):
        return window, default_granularity(window) if window is not None else None
    granularity = fields.duration("granularity")
    if granularity is not None and window is not None and window % granularity != 0:
        fields.problem(
            fields.pos("granularity"),
            f"window {format_duration(window)} is not a whole multiple of granularity "
            f"{format_duration(granularity)}",
        )
    return window, granularity
