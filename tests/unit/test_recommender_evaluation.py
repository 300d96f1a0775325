"""Offline evaluation of the recommender on a synthetic purchase log with a planted structure.

The log: 72 products in 8 categories, grouped into bundles of 3 products from 3 different
categories. Each user has a favourite category; each order buys 2 or 3 products of one bundle
(a bundle holding a product of the favourite category 60% of the time, otherwise a bundle
drawn with a popularity skew). Leave one out: for each test user, one product of their last
order is held out; the co-purchase counts are learned from every other order and from the rest
of that user's. A hit is the held-out product in the top 5.

The baseline recommends the most purchased products the user has not bought.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from recommendation_service.recommender import (
    BoughtItem,
    co_purchase_pairs,
    pair_key,
    popularity_baseline,
    recommend,
)
from shared.catalog import Product

SEED = 20_260_101
CATEGORIES = 8
PER_CATEGORY = 9
BUNDLE_SIZE = 3
USERS = 400
TEST_USERS = 150
ORDERS_PER_USER = 3
FAVOURITE_SHARE = 0.6
TOP_N = 5
NOW = datetime(2026, 1, 1, tzinfo=UTC)

Order = tuple[str, datetime, list[str]]  # user, when, product ids


def build_catalog(rng: random.Random) -> list[Product]:
    return [
        Product.model_validate(
            {
                "id": f"p{c}-{i}",
                "title": f"Product {c}-{i}",
                "price": 10,
                "category": f"category-{c}",
                "rating": {"rate": round(rng.uniform(3, 5), 1), "count": rng.randint(10, 500)},
            }
        )
        for c in range(CATEGORIES)
        for i in range(PER_CATEGORY)
    ]


def build_bundles(catalog: list[Product], rng: random.Random) -> list[list[Product]]:
    """Bundles of products from different categories (a round-robin over shuffled columns)."""
    by_category: dict[str, list[Product]] = {}
    for product in catalog:
        by_category.setdefault(product.category, []).append(product)
    columns = list(by_category.values())
    for column in columns:
        rng.shuffle(column)
    flat = [column[i] for i in range(PER_CATEGORY) for column in columns]
    return [flat[i : i + BUNDLE_SIZE] for i in range(0, len(flat), BUNDLE_SIZE)]


def build_log(rng: random.Random) -> tuple[list[Product], list[Order]]:
    catalog = build_catalog(rng)
    bundles = build_bundles(catalog, rng)
    skew = [1 / (rank + 1) for rank in range(len(bundles))]
    orders: list[Order] = []
    for user in range(USERS):
        favourite = f"category-{rng.randrange(CATEGORIES)}"
        liked = [b for b in bundles if any(p.category == favourite for p in b)]
        for n in range(ORDERS_PER_USER):
            if rng.random() < FAVOURITE_SHARE:
                bundle = rng.choice(liked)
            else:
                bundle = rng.choices(bundles, weights=skew)[0]
            chosen = rng.sample(bundle, rng.choice([2, 3]))
            when = NOW - timedelta(days=30 * (ORDERS_PER_USER - n))
            orders.append((f"user-{user}", when, [p.id for p in chosen]))
    return catalog, orders


def evaluate() -> tuple[float, float]:
    rng = random.Random(SEED)
    catalog, orders = build_log(rng)
    by_id = {p.id: p for p in catalog}
    hits = baseline_hits = 0
    for user_index in range(TEST_USERS):
        user = f"user-{user_index}"
        mine = [o for o in orders if o[0] == user]
        last_user, last_when, last_items = mine[-1]
        held_out = rng.choice(last_items)
        kept_last = (last_user, last_when, [i for i in last_items if i != held_out])
        training = [o for o in orders if o[0] != user] + mine[:-1] + [kept_last]
        co_counts: Counter[tuple[str, str]] = Counter()
        purchases: Counter[str] = Counter()
        for _, _, items in training:
            co_counts.update(pair_key(a, b) for a, b in co_purchase_pairs(items))
            purchases.update(items)
        history = [
            BoughtItem(pid, by_id[pid].title, by_id[pid].category, when)
            for _, when, items in [*mine[:-1], kept_last]
            for pid in items
        ]
        bought = {item.product_id for item in history}
        picks = recommend(catalog, history, co_counts, NOW, limit=TOP_N)
        baseline = popularity_baseline(catalog, purchases, bought, TOP_N)
        hits += held_out in {p.id for p in picks}
        baseline_hits += held_out in {p.id for p in baseline}
    return hits / TEST_USERS, baseline_hits / TEST_USERS


def test_hit_rate_at_5_clearly_beats_the_popularity_baseline() -> None:
    recommender_rate, baseline_rate = evaluate()
    print(
        f"hit-rate@5: recommender {recommender_rate:.3f}, popularity baseline {baseline_rate:.3f}"
    )
    assert recommender_rate >= baseline_rate + 0.25
    assert recommender_rate >= 2 * baseline_rate
