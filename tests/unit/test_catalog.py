"""The shipped catalog and the catalog models (no I/O beyond the package's own data file)."""

from __future__ import annotations

from shared.catalog import Product, products_url, shipped_products


def test_the_shipped_catalog_has_enough_products_and_categories() -> None:
    products = shipped_products()
    assert len(products) >= 60
    assert len({p.category for p in products}) >= 6
    assert len({p.id for p in products}) == len(products)
    assert all(p.rating.count > 0 and 0 < p.rating.rate <= 5 for p in products)


def test_fakestoreapi_integer_ids_become_strings() -> None:
    product = Product.model_validate(
        {"id": 7, "title": "T", "price": 1.5, "category": "c", "rating": {"rate": 4, "count": 2}}
    )
    assert product.id == "7"
    assert product.as_line() == {"productId": "7", "title": "T", "category": "c", "price": 1.5}


def test_catalog_url_may_name_the_root_or_the_products_endpoint() -> None:
    assert products_url("http://x/") == "http://x/products"
    assert products_url("http://x/products") == "http://x/products"
