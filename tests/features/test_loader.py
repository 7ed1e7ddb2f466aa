"""The definition loader: one test per rule of SPEC §2/§4, each checking `path:line:column`.

Cases start from a small valid repository (`BASE`) and break it with text replacements;
the expected location is where a marker string sits in the broken text, so a case reads
as "the problem is reported at this word".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from features.durations import parse_duration
from features.errors import DefinitionError, Problem
from features.loader import load_definitions
from features.model import FUNCTIONS, definitions_from_dict, definitions_to_dict

BASE = """\
entities:
  - name: user
    join_keys: [user_id]
  - name: user_item
    join_keys: [user_id, item_id]
sources:
  - name: txns
    topic: txns
    key: [user_id]
    event_id: txn_id
    timestamp: ts
    allowed_lateness: 1h
    schema:
      txn_id: {dtype: string}
      user_id: {dtype: string}
      item_id: {dtype: string}
      amount: {dtype: float, checks: {ge: 0}}
      merchant: {dtype: string, nullable: true}
      quantity: {dtype: int}
      flagged: {dtype: bool}
      ts: {dtype: timestamp}
feature_views:
  - name: user_txn
    entity: user
    source: txns
    ttl: 7d
    owner: risk
    tags: {tier: gold}
    features:
      - {name: n_1h, function: count, window: 1h}
      - {name: amount_sum_1d, function: sum, column: amount, window: 1d}
      - {name: last_merchant, function: last, column: merchant}
      - {name: last_3, function: last_n, column: amount, n: 3, window: 1h}
"""

SUM = "{name: amount_sum_1d, function: sum, column: amount, window: 1d}"
LAST_N = "{name: last_3, function: last_n, column: amount, n: 3, window: 1h}"
Edit = tuple[str, str]


def edit(*edits: Edit, base: str = BASE) -> str:
    """`base` with each `(old, new)` replacement applied once; `old` must be present."""
    text = base
    for old, new in edits:
        assert old in text, f"test bug: {old!r} not in the text"
        text = text.replace(old, new, 1)
    return text


def position(text: str, marker: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of `marker` in `text`.

    A `«` inside the marker moves the point to that place (`"source: «txn"` → `txn`).
    """
    before, _, after = marker.partition("«")
    index = text.index(before + after) + (len(before) if after else 0)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        load_definitions(path)
    return info.value.problems


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# (id, edits, marker where the problem is reported, message substring)
RULES: list[tuple[str, list[Edit], str, str]] = [
    # unknown keys and fields, with "did you mean"
    (
        "unknown-top-level",
        [("feature_views:\n", "feature_veiws:\n")],
        "feature_veiws",
        "unknown top-level key 'feature_veiws' (did you mean 'feature_views'?)",
    ),
    (
        "unknown-entity-field",
        [("join_keys: [user_id]\n", "join_keys: [user_id]\n    descripton: x\n")],
        "descripton",
        "entity 'user': unknown field 'descripton' (did you mean 'description'?)",
    ),
    (
        "unknown-source-field",
        [("allowed_lateness", "allowed_latness")],
        "allowed_latness",
        "source 'txns': unknown field 'allowed_latness' (did you mean 'allowed_lateness'?)",
    ),
    (
        "unknown-column-field",
        [("{dtype: float, checks", "{dtype: float, nulable: true, checks")],
        "nulable",
        "column 'amount' of source 'txns': unknown field 'nulable' (did you mean 'nullable'?)",
    ),
    (
        "unknown-check",
        [("checks: {ge: 0}", "checks: {gee: 0}")],
        "gee",
        "column 'amount' of source 'txns': unknown check 'gee' (did you mean 'ge'?)",
    ),
    (
        "unknown-view-field",
        [("    owner: risk", "    owners: risk")],
        "owners",
        "feature view 'user_txn': unknown field 'owners' (did you mean 'owner'?)",
    ),
    (
        "unknown-feature-field",
        [(SUM, SUM.replace("window", "windw"))],
        "windw",
        "feature 'user_txn:amount_sum_1d': unknown field 'windw' (did you mean 'window'?)",
    ),
    # missing required fields: reported at the start of the item
    (
        "missing-entity-join-keys",
        [("  - name: user\n    join_keys: [user_id]\n", "  - name: user\n")],
        "name: user\n",
        "entity 'user': missing required field 'join_keys'",
    ),
    (
        "missing-source-event-id",
        [("    event_id: txn_id\n", "")],
        "name: txns",
        "source 'txns': missing required field 'event_id'",
    ),
    (
        "missing-view-ttl",
        [("    ttl: 7d\n", "")],
        "name: user_txn",
        "feature view 'user_txn': missing required field 'ttl'",
    ),
    (
        "missing-feature-function",
        [("{name: n_1h, function: count, window: 1h}", "{name: n_1h, window: 1h}")],
        "{name: n_1h",
        "feature 'user_txn:n_1h': missing required field 'function'",
    ),
    (
        "missing-column-dtype",
        [("merchant: {dtype: string, nullable: true}", "merchant: {nullable: true}")],
        "{nullable: true}",
        "column 'merchant' of source 'txns': missing required field 'dtype'",
    ),
    # wrong types
    (
        "wrong-type-owner",
        [("owner: risk", "owner: [risk]")],
        "[risk]",
        "field 'owner' must be a non-empty string, got a list",
    ),
    (
        "wrong-type-nullable",
        [("nullable: true", "nullable: yes")],
        "yes",
        "field 'nullable' must be true or false, got string 'yes'",
    ),
    (
        "wrong-type-join-keys",
        [("join_keys: [user_id]", "join_keys: 5")],
        "5",
        "field 'join_keys' must be a name or a non-empty list of names, got integer 5",
    ),
    (
        "wrong-type-n",
        [("n: 3", "n: three")],
        "three",
        "field 'n' must be an integer, got string 'three'",
    ),
    (
        "wrong-type-tags",
        [("tags: {tier: gold}", "tags: [gold]")],
        "[gold]",
        "field 'tags' must be a mapping, got a list",
    ),
    (
        "wrong-type-tag-value",
        [("tags: {tier: gold}", "tags: {tier: [gold]}")],
        "tier",
        "tag string 'tier' must map a string to a string, got a list",
    ),
    (
        "wrong-type-schema",
        [("    schema:\n", "    schema: txn_id\n    x:\n")],
        "schema: «txn_id",
        "field 'schema' must be a mapping, got string 'txn_id'",
    ),
    (
        "wrong-type-features",
        [("    features:\n", "    features: {}\n    x:\n")],
        "{}",
        "field 'features' must be a list, got a mapping",
    ),
    (
        "wrong-type-top-level",
        [("entities:\n", "entities: {}\nx:\n")],
        "entities",
        "'entities' must be a list, got a mapping",
    ),
    (
        "wrong-type-item",
        [("  - name: user_item\n    join_keys: [user_id, item_id]\n", "  - user_item\n")],
        "user_item",
        "entities item #2 must be a mapping, got string 'user_item'",
    ),
    (
        "invalid-name",
        [("name: user_txn", "name: user txn")],
        "user txn",
        "invalid name 'user txn' in field 'name': use letters, digits and underscores",
    ),
    # duplicate names
    (
        "duplicate-feature",
        [("{name: last_3,", "{name: n_1h,")],
        "n_1h, function: last_n",
        "feature view 'user_txn': duplicate feature name 'n_1h' (first defined at line 30)",
    ),
    (
        "duplicate-entity",
        [("  - name: user_item\n", "  - name: user\n")],
        "user\n    join_keys: [user_id, item_id]",
        "duplicate entity name 'user' (first defined at ",
    ),
    (
        "duplicate-yaml-key",
        [("      flagged: {dtype: bool}\n", "      flagged: {dtype: bool}\n      amount: {}\n")],
        "amount: {}",
        'YAML syntax error: while constructing a mapping found duplicate key "amount"',
    ),
    # dtypes and checks
    (
        "unknown-dtype",
        [("{dtype: float", "{dtype: flaot")],
        "flaot",
        "column 'amount' of source 'txns': unknown dtype 'flaot' (did you mean 'float'?)",
    ),
    (
        "bound-on-string",
        [("{dtype: string, nullable: true}", "{dtype: string, nullable: true, checks: {ge: 1}}")],
        "ge: 1",
        "check 'ge' needs an int, float or timestamp column, not string",
    ),
    (
        "bound-on-bool",
        [("flagged: {dtype: bool}", "flagged: {dtype: bool, checks: {lt: 1}}")],
        "lt: 1",
        "check 'lt' needs an int, float or timestamp column, not bool",
    ),
    (
        "bound-of-wrong-type",
        [("checks: {ge: 0}", "checks: {ge: zero}")],
        "zero",
        "check 'ge' needs a number (the column is float), got string 'zero'",
    ),
    (
        "timestamp-bound-unparsable",
        [("ts: {dtype: timestamp}", "ts: {dtype: timestamp, checks: {gt: yesterday}}")],
        "yesterday",
        "check 'gt' needs an ISO-8601 timestamp or epoch milliseconds (the column is timestamp)",
    ),
    (
        "str-length-on-int",
        [("{dtype: int}", "{dtype: int, checks: {str_length: {min: 1}}}")],
        "str_length",
        "column 'quantity' of source 'txns': check 'str_length' needs a string column, not int",
    ),
    (
        "regex-on-float",
        [("checks: {ge: 0}", "checks: {regex: '^[0-9]+$'}")],
        "regex",
        "check 'regex' needs a string column, not float",
    ),
    (
        "regex-does-not-compile",
        [
            (
                "{dtype: string}\n      user_id",
                "{dtype: string, checks: {regex: 'a(b'}}\n      user_id",
            )
        ],
        "'a(b'",
        "check 'regex' 'a(b' does not compile: missing ), unterminated subpattern",
    ),
    (
        "isin-value-of-wrong-type",
        [("{dtype: int}", "{dtype: int, checks: {isin: [1, two]}}")],
        "two",
        "check 'isin' needs an integer (the column is int), got string 'two'",
    ),
    (
        "notin-value-of-wrong-type",
        [("flagged: {dtype: bool}", "flagged: {dtype: bool, checks: {notin: [1]}}")],
        "1]",
        "check 'notin' needs true or false (the column is bool), got integer 1",
    ),
    (
        "isin-empty",
        [("checks: {ge: 0}", "checks: {isin: []}")],
        "[]",
        "check 'isin' must list at least one value",
    ),
    (
        "str-length-min-above-max",
        [
            (
                "{dtype: string}\n      user_id",
                "{dtype: string, checks: {str_length: {min: 9, max: 3}}}\n      user_id",
            )
        ],
        "min: «9",
        "check 'str_length': 'min' (9) is greater than 'max' (3)",
    ),
    (
        "str-length-negative",
        [
            (
                "{dtype: string}\n      user_id",
                "{dtype: string, checks: {str_length: {max: -1}}}\n      user_id",
            )
        ],
        "-1",
        "'max' must be at least 0, got -1",
    ),
    # event id, timestamp and key columns
    (
        "event-id-not-in-schema",
        [("event_id: txn_id", "event_id: txnid")],
        "txnid",
        "source 'txns': event_id column 'txnid' is not in the schema (did you mean 'txn_id'?)",
    ),
    (
        "timestamp-not-in-schema",
        [("timestamp: ts", "timestamp: time")],
        "time\n",
        "source 'txns': timestamp column 'time' is not in the schema",
    ),
    (
        "key-not-in-schema",
        [("key: [user_id]", "key: [usr_id]")],
        "usr_id",
        "source 'txns': key column 'usr_id' is not in the schema (did you mean 'user_id'?)",
    ),
    (
        "timestamp-wrong-dtype",
        [("timestamp: ts", "timestamp: quantity")],
        "quantity\n",
        "timestamp column 'quantity' must have dtype timestamp, not int",
    ),
    (
        "event-id-wrong-dtype",
        [("event_id: txn_id", "event_id: amount")],
        "amount\n",
        "event_id column 'amount' must have dtype string or int, not float",
    ),
    (
        "key-nullable",
        [("key: [user_id]", "key: [merchant]")],
        "merchant]",
        "key column 'merchant' must not be nullable",
    ),
    # references between views, entities and sources
    (
        "unknown-entity",
        [("entity: user\n", "entity: usr\n")],
        "usr",
        "feature view 'user_txn': unknown entity 'usr' (did you mean 'user'?)",
    ),
    (
        "unknown-source",
        [("source: txns", "source: txn")],
        "source: «txn\n",
        "feature view 'user_txn': unknown source 'txn' (did you mean 'txns'?)",
    ),
    (
        "join-key-not-in-source",
        [("      item_id: {dtype: string}\n", ""), ("entity: user\n", "entity: user_item\n")],
        "txns\n    ttl",
        "join key 'item_id' of entity 'user_item' is not a column of source 'txns'",
    ),
    (
        "join-key-wrong-dtype",
        [
            ("item_id: {dtype: string}", "item_id: {dtype: float}"),
            ("entity: user\n", "entity: user_item\n"),
        ],
        "txns\n    ttl",
        "join key column 'item_id' of source 'txns' must be a non-nullable string or int "
        "(it is float)",
    ),
    # functions and columns
    (
        "unknown-function",
        [(SUM, SUM.replace("function: sum", "function: summ"))],
        "summ",
        "feature 'user_txn:amount_sum_1d': unknown function 'summ' (did you mean 'sum'?)",
    ),
    (
        "function-needs-column",
        [(SUM, SUM.replace(" column: amount,", ""))],
        "{name: amount_sum_1d",
        "feature 'user_txn:amount_sum_1d': function 'sum' needs a 'column'",
    ),
    (
        "column-not-in-schema",
        [(SUM, SUM.replace("column: amount", "column: amout"))],
        "amout",
        "feature 'user_txn:amount_sum_1d': column 'amout' is not in the schema of source "
        "'txns' (did you mean 'amount'?)",
    ),
    (
        "sum-over-string",
        [(SUM, SUM.replace("column: amount", "column: merchant"))],
        "merchant, window",
        "function 'sum' needs a column of dtype float or int; 'merchant' is string",
    ),
    (
        "mean-over-bool",
        [(SUM, SUM.replace("function: sum, column: amount", "function: mean, column: flagged"))],
        "flagged, window",
        "function 'mean' needs a column of dtype float or int; 'flagged' is bool",
    ),
    (
        "stddev-over-timestamp",
        [(SUM, SUM.replace("function: sum, column: amount", "function: stddev, column: ts"))],
        "ts, window",
        "function 'stddev' needs a column of dtype float or int; 'ts' is timestamp",
    ),
    (
        "max-over-bool",
        [(SUM, SUM.replace("function: sum, column: amount", "function: max, column: flagged"))],
        "flagged, window",
        "function 'max' needs a column of dtype float, int, string or timestamp; 'flagged' is bool",
    ),
    # n for last_n
    (
        "n-missing",
        [(LAST_N, LAST_N.replace(" n: 3,", ""))],
        "last_n",
        "feature 'user_txn:last_3': function 'last_n' needs 'n' (1..100)",
    ),
    (
        "n-zero",
        [(LAST_N, LAST_N.replace("n: 3", "n: 0"))],
        "0, window",
        "'n' must be between 1 and 100, got 0",
    ),
    (
        "n-too-large",
        [(LAST_N, LAST_N.replace("n: 3", "n: 101"))],
        "101",
        "'n' must be between 1 and 100, got 101",
    ),
    (
        "n-on-other-function",
        [(SUM, SUM.replace("window: 1d", "n: 3, window: 1d"))],
        "n: 3, window: 1d",
        "feature 'user_txn:amount_sum_1d': 'n' only applies to function 'last_n', not 'sum'",
    ),
    # durations, windows and granularities
    (
        "bad-window",
        [(SUM, SUM.replace("window: 1d", "window: 1x"))],
        "1x",
        "invalid duration string '1x' for 'window': expected <int><unit> with unit s, m, h or d",
    ),
    (
        "bad-ttl",
        [("ttl: 7d", "ttl: 7days")],
        "7days",
        "feature view 'user_txn': invalid duration string '7days' for 'ttl'",
    ),
    (
        "bad-ttl-number",
        [("ttl: 7d", "ttl: 604800")],
        "604800",
        "invalid duration integer 604800 for 'ttl'",
    ),
    (
        "bad-allowed-lateness",
        [("allowed_lateness: 1h", "allowed_lateness: -1h")],
        "-1h",
        "source 'txns': invalid duration string '-1h' for 'allowed_lateness'",
    ),
    (
        "bad-granularity",
        [(SUM, SUM.replace("window: 1d", "window: 1d, granularity: 1.5h"))],
        "1.5h",
        "invalid duration string '1.5h' for 'granularity'",
    ),
    (
        "zero-granularity",
        [(SUM, SUM.replace("window: 1d", "window: 1d, granularity: 0s"))],
        "0s",
        "invalid duration string '0s' for 'granularity'",
    ),
    (
        "window-longer-than-ttl",
        [(SUM, SUM.replace("window: 1d", "window: 8d"))],
        "8d",
        "feature 'user_txn:amount_sum_1d': window 8d is longer than the view's ttl 7d",
    ),
    (
        "window-not-multiple-of-granularity",
        [(SUM, SUM.replace("window: 1d", "window: 1d, granularity: 7m"))],
        "7m",
        "feature 'user_txn:amount_sum_1d': window 1d is not a whole multiple of granularity 7m",
    ),
    # the source key when not written
    (
        "key-ambiguous",
        [
            ("    key: [user_id]\n", ""),
            (
                "feature_views:\n",
                "feature_views:\n  - name: pairs\n    entity: user_item\n    source: txns\n"
                "    ttl: 1d\n    features: [{name: n, function: count}]\n",
            ),
        ],
        "txns\n    topic",
        "source 'txns': no 'key' given and its views' entities have different join keys "
        "('pairs' uses (user_id, item_id); 'user_txn' uses (user_id)); set 'key'",
    ),
    (
        "key-unused-source",
        [("    key: [user_id]\n", ""), ("source: txns", "source: other")],
        "txns\n    topic",
        "source 'txns': no 'key' given and no feature view uses it to infer one",
    ),
    # YAML itself
    (
        "yaml-syntax",
        [("tags: {tier: gold}", "tags: {tier: gold")],
        "    features«:",
        "YAML syntax error: while parsing a flow mapping expected ',' or '}'",
    ),
]


@pytest.mark.parametrize(
    ("edits", "marker", "message"),
    [pytest.param(e, m, msg, id=i) for i, e, m, msg in RULES],
)
def test_rule_reports_exact_location(
    tmp_path: Path, edits: list[Edit], marker: str, message: str
) -> None:
    text = edit(*edits)
    path = write(tmp_path, "defs.yaml", text)
    problems = problems_of(path)
    line, column = position(text, marker)
    located = [str(p) for p in problems if (p.line, p.column) == (line, column)]
    assert any(message in s for s in located), (
        f"expected {message!r} at {line}:{column}; got:\n" + "\n".join(map(str, problems))
    )
    assert all(str(p).startswith(f"{path}:") for p in problems)


def test_base_repository_resolves_defaults(tmp_path: Path) -> None:
    text = edit(("    allowed_lateness: 1h\n", ""), ("    topic: txns\n", ""))
    defs = load_definitions(write(tmp_path, "defs.yaml", text))
    source = defs.sources["txns"]
    assert source.topic == "txns"  # defaults to the source name
    assert source.allowed_lateness == parse_duration("1h")
    assert source.key == ("user_id",)
    assert source.columns["amount"].checks.ge == 0
    assert source.columns["merchant"].nullable
    view = defs.views["user_txn"]
    assert view.ttl == parse_duration("7d")
    assert view.owner == "risk"
    assert view.tags == (("tier", "gold"),)
    by_name = {f.name: f for f in view.features}
    # no window: the view's ttl; no granularity: the default tile size of the window
    assert by_name["last_merchant"].window == parse_duration("7d")
    assert by_name["last_merchant"].granularity == parse_duration("1h")
    assert by_name["n_1h"].granularity == parse_duration("1m")
    assert by_name["n_1h"].column is None
    assert by_name["last_3"].n == 3
    assert by_name["amount_sum_1d"].n is None
    assert defs.entities["user_item"].join_keys == ("user_id", "item_id")


def test_key_defaults_to_join_keys_of_views_entity(tmp_path: Path) -> None:
    text = edit(("    key: [user_id]\n", ""), ("entity: user\n", "entity: user_item\n"))
    defs = load_definitions(write(tmp_path, "defs.yaml", text))
    assert defs.sources["txns"].key == ("user_id", "item_id")


def test_explicit_key_wins_over_views_entities(tmp_path: Path) -> None:
    text = edit(
        ("key: [user_id]", "key: [user_id, item_id]"),
        (
            "feature_views:\n",
            "feature_views:\n  - name: pairs\n    entity: user_item\n    source: txns\n"
            "    ttl: 1d\n    features: [{name: n, function: count}]\n",
        ),
    )
    defs = load_definitions(write(tmp_path, "defs.yaml", text))
    assert defs.sources["txns"].key == ("user_id", "item_id")
    assert set(defs.views) == {"pairs", "user_txn"}


def test_explicit_granularity_and_zero_lateness(tmp_path: Path) -> None:
    text = edit(
        (SUM, SUM.replace("window: 1d", "window: 1d, granularity: 30m")),
        ("allowed_lateness: 1h", "allowed_lateness: 0s"),
    )
    defs = load_definitions(write(tmp_path, "defs.yaml", text))
    assert defs.views["user_txn"].feature("amount_sum_1d").granularity == parse_duration("30m")
    assert defs.sources["txns"].allowed_lateness == 0


@pytest.mark.parametrize(
    ("function", "column"),
    [
        ("min", "merchant"),
        ("max", "ts"),
        ("min", "quantity"),
        ("last", "flagged"),
        ("first", "merchant"),
        ("count", "flagged"),
        ("last_n", "ts"),
        ("sum", "quantity"),
        ("stddev", "amount"),
    ],
)
def test_functions_accept_their_dtypes(tmp_path: Path, function: str, column: str) -> None:
    extra = ", n: 2" if function == "last_n" else ""
    text = edit((SUM, f"{{name: f, function: {function}, column: {column}{extra}}}"))
    feature = load_definitions(write(tmp_path, "defs.yaml", text)).views["user_txn"].feature("f")
    assert (feature.function, feature.column) == (function, column)


def test_check_arguments_are_typed_for_the_column(tmp_path: Path) -> None:
    text = edit(
        ("ts: {dtype: timestamp}", "ts: {dtype: timestamp, checks: {ge: '2026-01-01T00:00:00Z'}}"),
        ("quantity: {dtype: int}", "quantity: {dtype: int, checks: {isin: [1, 2], le: 9}}"),
        ("{dtype: float, checks: {ge: 0}}", "{dtype: float, checks: {ge: 0.5, notin: [3, 4.5]}}"),
        (
            "{dtype: string}\n      user_id",
            "{dtype: string, checks: {str_length: {min: 1}}}\n      user_id",
        ),
        ("user_id: {dtype: string}", "user_id: {dtype: string, checks: {regex: '^u[0-9]+$'}}"),
    )
    columns = load_definitions(write(tmp_path, "defs.yaml", text)).sources["txns"].columns
    assert columns["ts"].checks.ge == 1_767_225_600_000_000  # µs since the epoch
    assert columns["quantity"].checks.isin == (1, 2)
    assert columns["quantity"].checks.le == 9
    assert columns["amount"].checks.ge == 0.5
    assert columns["amount"].checks.notin == (3, 4.5)
    assert (columns["txn_id"].checks.str_length_min, columns["txn_id"].checks.str_length_max) == (
        1,
        None,
    )
    assert columns["user_id"].checks.regex == "^u[0-9]+$"
    assert all(type(v) in (int, float) for v in (*columns["amount"].checks.notin, 0))


def test_names_have_separate_namespaces(tmp_path: Path) -> None:
    text = edit(
        ("  - name: user_item\n", "  - name: txns\n"),
        ("  - name: user_txn\n", "  - name: txns\n"),
    )
    defs = load_definitions(write(tmp_path, "defs.yaml", text))
    assert "txns" in defs.entities and "txns" in defs.sources and "txns" in defs.views


def test_every_problem_of_every_file_is_reported_sorted(tmp_path: Path) -> None:
    entities, rest = BASE.split("sources:\n")
    sources, views = rest.split("feature_views:\n")
    broken_entities = edit(("join_keys: [user_id]\n", "join_key: [user_id]\n"), base=entities)
    broken_sources = edit(
        ("{dtype: float", "{dtype: flaot"), ("event_id: txn_id", "event_id: txnid"), base=sources
    )
    write(tmp_path, "a_entities.yaml", broken_entities)
    write(tmp_path, "b_sources.yaml", "sources:\n" + broken_sources)
    views_text = "feature_views:\n" + edit(
        ("ttl: 7d", "ttl: 1d"),
        (SUM, SUM.replace("window: 1d", "window: 2d")),
        (LAST_N, LAST_N.replace("n: 3", "n: 300")),
        base=views,
    )
    write(tmp_path, "c_views.yml", views_text)
    write(tmp_path, "notes.txt", "not: [a definition")  # ignored: not a YAML file
    problems = problems_of(tmp_path)
    shown = [f"{Path(p.path).name}:{p.line}:{p.column}: {p.message}" for p in problems]
    assert shown == [
        "a_entities.yaml:2:5: entity 'user': missing required field 'join_keys'",
        "a_entities.yaml:3:5: entity 'user': unknown field 'join_key' (did you mean 'join_keys'?)",
        "b_sources.yaml:5:15: source 'txns': event_id column 'txnid' is not in the schema "
        "(did you mean 'txn_id'?)",
        "b_sources.yaml:12:23: column 'amount' of source 'txns': unknown dtype 'flaot' "
        "(did you mean 'float'?)",
        "c_views.yml:10:70: feature 'user_txn:amount_sum_1d': window 2d is longer than the "
        "view's ttl 1d",
        "c_views.yml:12:61: feature 'user_txn:last_3': 'n' must be between 1 and 100, got 300",
    ]
    assert problems == sorted(problems, key=lambda p: (p.path, p.line, p.column))


def test_duplicate_names_across_files_point_at_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "sources:\n" + BASE.split("sources:\n")[1].split("feature_views")[0])
    problems = problems_of(tmp_path)
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'b.yaml'}:2:11: duplicate source name 'txns' "
        f"(first defined at {tmp_path / 'a.yaml'}:7:11)"
    ]


def test_syntax_error_refuses_the_file_without_cascading(tmp_path: Path) -> None:
    entities, rest = BASE.split("sources:\n")
    write(tmp_path, "entities.yaml", entities.replace("[user_id]", "[user_id"))
    write(tmp_path, "rest.yaml", "sources:\n" + rest)
    problems = problems_of(tmp_path)
    # the view's entity lives in the unreadable file: no "unknown entity" noise
    assert len(problems) == 1
    assert problems[0].path.endswith("entities.yaml")
    assert problems[0].message.startswith("YAML syntax error: ")


def test_error_text_is_one_located_line_per_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path, "defs.yaml", edit(("ttl: 7d", "ttl: 7x"), ("function: sum", "function: add"))
    )
    with pytest.raises(DefinitionError) as info:
        load_definitions(path)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}:26:10: feature view 'user_txn': invalid duration string '7x' for 'ttl': "
        "expected <int><unit> with unit s, m, h or d (e.g. 15m, 24h, 7d)",
        f"{path}:31:41: feature 'user_txn:amount_sum_1d': unknown function 'add' "
        f"(expected one of: {', '.join(FUNCTIONS)})",
    ]


def test_relative_paths_are_shown_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "defs").mkdir()
    write(tmp_path / "defs", "x.yaml", "entities: [{name: u}]\n")
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in problems_of(Path("defs"))] == [
        "defs/x.yaml:1:12: entity 'u': missing required field 'join_keys'"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"- a\n- b\n", "a definition file must be a mapping with 'entities', 'sources'"),
        (b"just text\n", "a definition file must be a mapping"),
        (b"\xff\xfe\x00", "cannot read definition file"),
    ],
)
def test_file_that_is_not_a_mapping(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "defs.yaml"
    path.write_bytes(content)
    problems = problems_of(path)
    assert len(problems) == 1
    assert (problems[0].line, problems[0].column) == (1, 1)
    assert message in problems[0].message


def test_directory_handling(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="no such definitions file or directory"):
        load_definitions(tmp_path / "missing")
    with pytest.raises(DefinitionError, match=r"no definition files \(\*.yaml, \*.yml\)"):
        load_definitions(tmp_path)
    write(tmp_path, "empty.yaml", "# nothing yet\n")
    write(tmp_path, "defs.yml", BASE)
    write(tmp_path, "README.md", "entities: nonsense")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "broken.yaml", "entities: [")  # not recursive
    assert set(load_definitions(tmp_path).views) == {"user_txn"}


def test_merge_keys_are_read_without_positions_crashing(tmp_path: Path) -> None:
    text = edit(
        (
            "feature_views:\n",
            "feature_views:\n  - &base\n    name: base\n    entity: user\n"
            "    source: txns\n    ttl: 1d\n    features: [{name: n, function: count}]\n"
            "  - <<: *base\n    name: copy\n    ownr: me\n",
        ),
    )
    problems = problems_of(write(tmp_path, "defs.yaml", text))
    message = "feature view 'copy': unknown field 'ownr' (did you mean 'owner'?)"
    assert [(p.line, p.column, p.message) for p in problems] == [(*position(text, "ownr"), message)]


def test_model_round_trips_through_the_registry_form(tmp_path: Path) -> None:
    defs = load_definitions(write(tmp_path, "defs.yaml", BASE))
    assert definitions_from_dict(definitions_to_dict(defs)) == defs


def test_a_broken_repository_returns_nothing(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", BASE)
    write(tmp_path, "zz_bad.yaml", "entities:\n  - {name: other, join_keys: [x], extra: 1}\n")
    result = None
    with pytest.raises(DefinitionError):
        result = load_definitions(tmp_path)
    assert result is None


# The example repository shipped in features/definitions (used by the demo and benches).
EXAMPLES = Path(__file__).resolve().parents[2] / "features" / "definitions"


def test_example_repository_loads_and_covers_every_function() -> None:
    defs = load_definitions(EXAMPLES)
    assert {"transactions", "page_views", "logins"} <= set(defs.sources)
    assert defs.entities["user"].join_keys == ("user_id",)
    assert defs.entities["user_item"].join_keys == ("user_id", "item_id")
    assert defs.sources["transactions"].key == ("user_id",)
    assert defs.sources["page_views"].key == ("user_id", "item_id")
    assert defs.sources["logins"].key == ("user_id",)
    logins = defs.sources["logins"].columns
    assert {"device", "country", "success"} <= set(logins) and logins["success"].dtype == "bool"
    features = [f for v in defs.views.values() for f in v.features]
    assert {f.function for f in features} == set(FUNCTIONS)
    assert any(f.function == "count" and f.column is None for f in features)
    assert any(f.function == "count" and f.column is not None for f in features)
    windows = {f.window for f in features}
    assert min(windows) == parse_duration("1m") and max(windows) == parse_duration("30d")
    assert max(v.ttl for v in defs.views.values()) == parse_duration("30d")
    assert all(v.owner and v.tags for v in defs.views.values())
    assert any(v.entity == "user_item" and v.source == "page_views" for v in defs.views.values())
    assert definitions_from_dict(definitions_to_dict(defs)) == defs
