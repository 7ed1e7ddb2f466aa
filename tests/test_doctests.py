"""Docstring examples of every module of the three packages are tests (STYLE: tiny examples
that run)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import features
import pipelines
import serving

MODULES = sorted(
    info.name
    for package in (features, pipelines, serving)
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
)
# The semantics core must carry runnable examples (STYLE: aggregations and tile math).
MUST_HAVE_EXAMPLES = (
    "features.aggregations",
    "features.column_states",
    "features.durations",
    "features.json_columns",
    "features.lateness",
    "features.layout",
    "features.merging",
    "features.state_texts",
    "features.tile_columns",
    "features.tiles",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


@pytest.mark.parametrize("name", MUST_HAVE_EXAMPLES)
def test_core_modules_have_examples(name: str) -> None:
    assert name in MODULES
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for t in finder.find(importlib.import_module(name)))
    assert examples > 0, f"{name} has no docstring example"
