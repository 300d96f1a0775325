"""The recommender: pure scoring of catalog products for one user. No I/O.

score(product) = w_co  * co-purchase signal  (how often it was bought together with what the
                                              user bought, learned from every user's orders,
                                              weighted by the recency of the user's purchase)
               + w_cat * category affinity   (the recency-weighted share of the user's
                                              purchases in the product's category)
               + w_pop * quality             (rating x log-popularity: tie-break, cold start)

Each signal is scaled to [0, 1] over the candidates. Products the user already bought (by id,
or by title for lines whose id is not a catalog id) are never candidates.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.catalog.models import Product

MAX_RATING = 5.0
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each signal counts, and how fast old purchases fade."""

    co_purchase: float = 1.0
    category: float = 0.5
    quality: float = 0.1
    recency_half_life_days: float = 90.0


@dataclass(frozen=True, slots=True)
class BoughtItem:
    """One product line of the user's history, with when it was bought."""

    product_id: str
    title: str
    category: str
    bought_at: datetime


def pair_key(first: str, second: str) -> tuple[str, str]:
    """The unordered pair of two product ids, in a fixed order."""
    return (first, second) if first <= second else (second, first)


def co_purchase_pairs(product_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Every unordered pair of distinct products bought in one order."""
    unique = sorted(set(product_ids))
    return [(a, b) for i, a in enumerate(unique) for b in unique[i + 1 :]]


def updated_top(
    top: Sequence[Mapping[str, Any]], partners: Iterable[str], size: int
) -> list[dict[str, Any]]:
    """A product's co-purchase top list after one more order with `partners`: each partner's
    count plus one, most bought-together first (ties by id), cut to `size` (a partner that
    falls off is forgotten: the list stays bounded however large the catalog)."""
    counts = {str(entry["id"]): int(entry["count"]) for entry in top}
    for partner in partners:
        counts[partner] = counts.get(partner, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]
    return [{"id": partner, "count": count} for partner, count in ranked]


def recency_weight(bought_at: datetime, now: datetime, half_life_days: float) -> float:
    """1 for a purchase made now, halving every half-life."""
    age_days = max((now - bought_at).total_seconds(), 0.0) / SECONDS_PER_DAY
    return 0.5 ** (age_days / half_life_days)


def quality(product: Product, max_count: int) -> float:
    """Rating times log-popularity, in [0, 1]."""
    rate = min(product.rating.rate, MAX_RATING) / MAX_RATING
    if max_count <= 0:
        return rate
    return rate * math.log1p(product.rating.count) / math.log1p(max_count)


def _scaled(values: Mapping[str, float]) -> dict[str, float]:
    top = max(values.values(), default=0.0)
    if top <= 0:
        return {key: 0.0 for key in values}
    return {key: value / top for key, value in values.items()}


def score(
    catalog: Sequence[Product],
    history: Sequence[BoughtItem],
    co_counts: Mapping[tuple[str, str], int],
    now: datetime,
    weights: Weights = Weights(),
) -> dict[str, float]:
    """The score of every product the user has not bought."""
    bought_ids = {item.product_id for item in history}
    bought_titles = {item.title.casefold() for item in history}
    candidates = [
        p for p in catalog if p.id not in bought_ids and p.title.casefold() not in bought_titles
    ]
    item_weight: dict[str, float] = defaultdict(float)
    category_weight: dict[str, float] = defaultdict(float)
    for item in history:
        w = recency_weight(item.bought_at, now, weights.recency_half_life_days)
        item_weight[item.product_id] = max(item_weight[item.product_id], w)
        category_weight[item.category.casefold()] += w

    co_raw = {
        p.id: sum(co_counts.get(pair_key(p.id, bought), 0) * w for bought, w in item_weight.items())
        for p in candidates
    }
    total_category = sum(category_weight.values())
    category = {
        p.id: (category_weight.get(p.category.casefold(), 0.0) / total_category)
        if total_category
        else 0.0
        for p in candidates
    }
    max_count = max((p.rating.count for p in catalog), default=0)
    co = _scaled(co_raw)
    return {
        p.id: weights.co_purchase * co[p.id]
        + weights.category * category[p.id]
        + weights.quality * quality(p, max_count)
        for p in candidates
    }


def recommend(
    catalog: Sequence[Product],
    history: Sequence[BoughtItem],
    co_counts: Mapping[tuple[str, str], int],
    now: datetime,
    *,
    limit: int = 5,
    weights: Weights = Weights(),
) -> list[Product]:
    """The `limit` best products for the user, best first (ties broken by id)."""
    scores = score(catalog, history, co_counts, now, weights)
    by_id = {p.id: p for p in catalog}
    ranked = sorted(scores, key=lambda pid: (-scores[pid], pid))
    return [by_id[pid] for pid in ranked[:limit]]


def popularity_baseline(
    catalog: Sequence[Product], purchase_counts: Mapping[str, int], exclude: set[str], limit: int
) -> list[Product]:
    """The most purchased products the user has not bought (the evaluation's baseline)."""
    ranked = sorted(
        (p for p in catalog if p.id not in exclude),
        key=lambda p: (-purchase_counts.get(p.id, 0), p.id),
    )
    return ranked[:limit]
