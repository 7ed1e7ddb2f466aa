"""One test per definition rule of SPEC §2/§4: each problem's exact `path:line:column`.

Each case breaks the valid `BASE` repository one way; the expected location is where a
marker string sits in the broken text, so a case reads as "reported at this word".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.features.definition_text import LAST_N, SUM, Edit, edit, position, problems_of, write

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
