"""The recommender's scoring: co-purchases, category affinity, quality, exclusions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recommendation_service.recommender import (
    BoughtItem,
    co_purchase_pairs,
    pair_key,
    recency_weight,
    recommend,
    updated_top,
)
from shared.catalog import Product

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def product(pid: str, category: str, rate: float = 4.0, count: int = 100) -> Product:
    return Product.model_validate(
        {
            "id": pid,
            "title": f"Product {pid}",
            "price": 10,
            "category": category,
            "rating": {"rate": rate, "count": count},
        }
    )


def bought(pid: str, category: str, days_ago: float = 0) -> BoughtItem:
    return BoughtItem(pid, f"Product {pid}", category, NOW - timedelta(days=days_ago))


CATALOG = [
    product("1", "books"),
    product("2", "books"),
    product("3", "kitchen"),
    product("4", "kitchen", rate=5.0, count=900),
    product("5", "outdoors"),
    product("6", "outdoors", rate=4.9, count=800),
]


def ids(products: list[Product]) -> list[str]:
    return [p.id for p in products]


def test_pairs_are_unordered_and_distinct() -> None:
    assert co_purchase_pairs(["b", "a", "a", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert pair_key("b", "a") == ("a", "b")


def test_recency_halves_every_half_life() -> None:
    assert recency_weight(NOW, NOW, 30) == 1
    assert abs(recency_weight(NOW - timedelta(days=30), NOW, 30) - 0.5) < 1e-9


def test_cold_start_ranks_by_rating_and_popularity() -> None:
    assert ids(recommend(CATALOG, [], {}, NOW, limit=2)) == ["4", "6"]


def test_never_recommends_what_was_bought_by_id_or_title() -> None:
    history = [bought("4", "kitchen"), BoughtItem("x", "product 6", "outdoors", NOW)]
    result = ids(recommend(CATALOG, history, {}, NOW, limit=10))
    assert "4" not in result and "6" not in result
    assert len(result) == 4


def test_co_purchases_beat_category_and_popularity() -> None:
    co = {pair_key("1", "5"): 3}
    assert ids(recommend(CATALOG, [bought("1", "books")], co, NOW, limit=1)) == ["5"]


def test_category_affinity_without_co_purchases() -> None:
    assert ids(recommend(CATALOG, [bought("1", "books")], {}, NOW, limit=1)) == ["2"]


def test_recent_purchases_weigh_more_than_old_ones() -> None:
    history = [bought("1", "books", days_ago=400), bought("3", "kitchen", days_ago=1)]
    assert ids(recommend(CATALOG, history, {}, NOW, limit=1)) == ["4"]
    history = [bought("1", "books", days_ago=1), bought("3", "kitchen", days_ago=400)]
    assert ids(recommend(CATALOG, history, {}, NOW, limit=1)) == ["2"]


def test_top_five_by_default() -> None:
    assert len(recommend(CATALOG, [], {}, NOW)) == 5


def test_a_top_list_counts_partners_and_keeps_the_most_bought_together() -> None:
    top = updated_top([], ["b", "c"], 2)
    assert top == [{"id": "b", "count": 1}, {"id": "c", "count": 1}]
    top = updated_top(top, ["c", "d"], 2)
    assert top == [{"id": "c", "count": 2}, {"id": "b", "count": 1}]  # d fell off (ties by id)
    assert len(updated_top(top, [str(n) for n in range(100)], 2)) == 2
