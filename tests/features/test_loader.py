"""The definition loader: resolution of defaults, directories, several files, the examples.

The per-rule location tests live in `test_loader_rules.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.durations import parse_duration
from features.errors import DefinitionError
from features.loader import load_definitions
from features.model import FUNCTIONS, definitions_from_dict, definitions_to_dict
from tests.features.definition_text import (
    BASE,
    LAST_N,
    SUM,
    edit,
    position,
    problems_of,
    write,
)


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


DAMAGE = [
    "",
    "x",
    "7d",
    "0s",
    "-1",
    "null",
    "[]",
    "{}",
    "[a, b]",
    "true",
    "1.5",
    "!tag 3",
    "&a 1",
    "*a",
    "? [a]",
    "'",
    "{",
    "- ",
    ":",
    "<<: {a: 1}",
    "2026-01-01",
    "0x10",
    "~",
]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_damage_is_reported_never_crashes(tmp_path: Path, data: st.DataObject) -> None:
    lines = BASE.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        token = data.draw(st.sampled_from(DAMAGE))
        action = data.draw(st.sampled_from(["delete", "value", "word", "copy"]))
        if action == "delete" and len(lines) > 1:
            del lines[i]
        elif action == "value" and ":" in lines[i]:
            lines[i] = lines[i].partition(":")[0] + ": " + token
        elif action == "word":
            words = lines[i].split(" ")
            words[data.draw(st.integers(0, len(words) - 1))] = token
            lines[i] = " ".join(words)
        else:
            lines.insert(i, lines[data.draw(st.integers(0, len(lines) - 1))])
    path = write(tmp_path, "defs.yaml", "\n".join(lines) + "\n")
    try:
        load_definitions(path)
    except DefinitionError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.path == str(path)
            assert 1 <= problem.line <= len(lines) + 1 and problem.column >= 1


def test_key_inferred_from_entities_sharing_join_keys(tmp_path: Path) -> None:
    text = edit(
        ("    key: [user_id]\n", ""),
        ("  - name: user_item\n", "  - name: customer\n    join_keys: [user_id]\n  - name: pair\n"),
        (
            "feature_views:\n",
            "feature_views:\n  - name: by_customer\n    entity: customer\n    source: txns\n"
            "    ttl: 1d\n    features: [{name: n, function: count}]\n",
        ),
    )
    assert load_definitions(write(tmp_path, "defs.yaml", text)).sources["txns"].key == ("user_id",)


def test_broken_entity_does_not_make_the_source_key_noisy(tmp_path: Path) -> None:
    text = edit(("    key: [user_id]\n", ""), ("join_keys: [user_id]", "join_keys: [user id]"))
    problems = problems_of(write(tmp_path, "defs.yaml", text))
    assert [p.message for p in problems] == [
        "entity 'user': invalid name string 'user id' in 'join_keys': use letters, digits and "
        "underscores, starting with a letter"
    ]
