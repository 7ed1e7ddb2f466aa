"""Column value models for the event generator: realistic for names we know, valid for all.

Known names (user_id, item_id, amount, country, currency, ip, latency_ms, success, …) get
distributions that look like production traffic — hot users, heavy tails, a home country
per user, failures that carry a reason — and every other column gets values that satisfy
its dtype and checks. `breakage` lists the ways an event can violate its schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.model import Column, Source

COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "NL", "ES")
COUNTRY_WEIGHTS: tuple[float, ...] = (0.45, 0.2, 0.12, 0.1, 0.07, 0.06)
CURRENCY_OF: dict[str, str] = {"US": "USD", "GB": "GBP"}  # everything else pays in EUR
CATEGORIES: tuple[str, ...] = ("electronics", "books", "fashion", "home", "toys", "sports")
FAILURE_RATE = 0.07


@dataclass
class Population:
    """Entities shared by all sources: the same hot users browse, buy and log in."""

    user_ids: np.ndarray
    user_p: np.ndarray
    user_country: np.ndarray
    user_ip: np.ndarray
    item_ids: np.ndarray
    item_p: np.ndarray
    item_category: np.ndarray


def population(users: int, items: int, skew: float, rng: np.random.Generator) -> Population:
    """Zipf-popular users (exponent `skew`) and items, with a home country and an address."""
    user_p = np.arange(1, users + 1, dtype=float) ** -skew
    item_p = np.arange(1, items + 1, dtype=float) ** -1.1
    octets = rng.integers(1, 255, (users, 4))
    return Population(
        # Hot users are not simply u00001, u00002, …: ranks are shuffled.
        user_ids=np.array([f"u{i:05d}" for i in rng.permutation(users) + 1]),
        user_p=user_p / user_p.sum(),
        user_country=rng.choice(np.array(COUNTRIES), users, p=COUNTRY_WEIGHTS),
        user_ip=np.array([".".join(map(str, row)) for row in octets.tolist()]),
        item_ids=np.array([f"item-{i:04d}" for i in rng.permutation(items) + 1]),
        item_p=item_p / item_p.sum(),
        item_category=rng.choice(np.array(CATEGORIES), items),
    )


@dataclass
class Draw:
    """What the columns of one batch share: who, which item, when."""

    n: int
    users: np.ndarray  # index into Population.user_ids
    items: np.ndarray  # index into Population.item_ids
    pop: Population
    rng: np.random.Generator


def column_values(col: Column, draw: Draw) -> np.ndarray:
    """Values of one non-time, non-id column as an object array (nulls not yet applied)."""
    name, checks, n, rng, pop = col.name, col.checks, draw.n, draw.rng, draw.pop
    values: np.ndarray
    if name == "user_id":
        values = pop.user_ids[draw.users]
    elif name == "item_id":
        values = pop.item_ids[draw.items]
    elif name == "country" and (not checks.isin or set(COUNTRIES) <= set(checks.isin)):
        values = pop.user_country[draw.users].copy()
        away = rng.random(n) < 0.04  # travelling
        values[away] = rng.choice(np.array(COUNTRIES), int(away.sum()))
    elif name == "category" and not checks.isin:
        values = pop.item_category[draw.items]
    elif name == "ip" and not checks.isin:
        values = pop.user_ip[draw.users].copy()
        moved = rng.random(n) < 0.1
        values[moved] = pop.user_ip[rng.integers(0, len(pop.user_ip), int(moved.sum()))]
    elif checks.isin:
        choices = np.array(checks.isin, dtype=object)
        weights = 1.0 / np.arange(1, len(choices) + 1)
        values = choices[rng.choice(len(choices), n, p=weights / weights.sum())]
    elif col.dtype == "float":
        # Heavy-tailed, like purchase amounts or dwell times.
        mu, sigma = (3.2, 1.3) if name in ("amount", "price", "value") else (3.0, 1.0)
        values = _bounded(np.round(rng.lognormal(mu, sigma, n), 2), col)
    elif col.dtype == "int":
        if "latency" in name or name.endswith("_ms"):
            raw: np.ndarray = rng.lognormal(5.0, 0.6, n)
        else:
            raw = rng.geometric(0.15, n) - 1.0
        values = _bounded(np.round(raw), col).astype(np.int64)
    elif col.dtype == "bool":
        p = {"success": 1 - FAILURE_RATE, "added_to_cart": 0.08}.get(name, 0.4)
        values = rng.random(n) < p
    else:
        values = _strings(col, n, rng)
    return np.asarray(values).astype(object)


def correlate(source: Source, columns: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Make known columns agree with each other, where the schema allows it (in place)."""
    names = source.columns
    if {"currency", "country"} <= set(names):
        allowed = set(names["currency"].checks.isin or ("USD", "GBP", "EUR"))
        currency = np.array([CURRENCY_OF.get(c, "EUR") for c in columns["country"].tolist()])
        usable = np.isin(currency, list(allowed))
        columns["currency"][usable] = currency[usable]
    if {"card_present", "channel"} <= set(names):
        columns["card_present"] = (columns["channel"] != "online").astype(object)
    if {"success", "failure_reason"} <= set(names):
        reasons = columns["failure_reason"]
        reasons[columns["success"].astype(bool)] = None
        if names["failure_reason"].checks.isin:
            failed = ~columns["success"].astype(bool)
            choices = np.array(names["failure_reason"].checks.isin, dtype=object)
            reasons[failed] = rng.choice(choices, int(failed.sum()))


def apply_nulls(col: Column, source: Source, values: np.ndarray, rate: float, rng: Any) -> None:
    """Blank a share of a nullable, non-key column (in place)."""
    if col.nullable and col.name not in source.key and col.name != "failure_reason":
        values[rng.random(len(values)) < rate] = None


def breakage(source: Source) -> list[tuple[str, Any]]:
    """Ways to make an event invalid: (column, bad value); `None` means null or missing."""
    options: list[tuple[str, Any]] = [(source.timestamp, "not-a-time")]
    for col in source.schema:
        if col.name in (source.event_id, source.timestamp):
            continue
        checks = col.checks
        low = checks.ge if checks.ge is not None else checks.gt
        if low is not None:
            options.append((col.name, int(low) - 5 if col.dtype == "int" else low - 12.5))
        high = checks.le if checks.le is not None else checks.lt
        if high is not None and col.dtype in ("int", "float"):
            options.append((col.name, int(high) + 5 if col.dtype == "int" else high * 2 + 1))
        if checks.isin:
            options.append((col.name, "ZZ-unknown"))
        if checks.str_length_min:
            options.append((col.name, ""))
        if checks.regex:
            options.append((col.name, "not valid!"))
        if col.dtype in ("float", "int"):
            options.append((col.name, "n/a"))
        if not col.nullable:
            options.append((col.name, None))
    return options


def _bounded(values: np.ndarray, col: Column) -> np.ndarray:
    """Clip values into the column's numeric checks."""
    c = col.checks
    if c.ge is not None:
        values = np.maximum(values, c.ge)
    if c.gt is not None:
        values = np.where(values <= c.gt, c.gt + 1, values)
    if c.le is not None:
        values = np.minimum(values, c.le)
    if c.lt is not None:
        values = np.where(values >= c.lt, c.lt - 1, values)
    return values


def _strings(col: Column, n: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf-distributed category strings such as merchants, pages or devices."""
    stem = col.name.removesuffix("_id").removesuffix("_name") or "v"
    size = 300 if col.name in ("merchant", "merchant_id") else 50
    weights = np.arange(1, size + 1, dtype=float) ** -1.05
    pool = np.array([f"{stem}_{i:03d}" for i in range(1, size + 1)], dtype=object)
    values = pool[rng.choice(size, n, p=weights / weights.sum())]
    lo, hi = col.checks.str_length_min, col.checks.str_length_max
    if lo is not None or hi is not None:
        values = np.array([_fit(v, lo, hi) for v in values.tolist()], dtype=object)
    return values


def _fit(value: str, lo: int | None, hi: int | None) -> str:
    if lo is not None and len(value) < lo:
        value = value.ljust(lo, "x")
    if hi is not None and len(value) > hi:
        value = value[-hi:]
    return value
