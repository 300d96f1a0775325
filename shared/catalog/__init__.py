"""The product catalog: models, the HTTP client (with retries and a cache) and the shipped data."""

from shared.catalog.browse import CatalogPage, page_of
from shared.catalog.client import CatalogClient, CatalogUnavailable, products_url, shipped_products
from shared.catalog.models import Product, Rating
from shared.catalog.settings import CatalogServiceSettings

__all__ = [
    "CatalogClient",
    "CatalogPage",
    "CatalogServiceSettings",
    "CatalogUnavailable",
    "Product",
    "Rating",
    "page_of",
    "products_url",
    "shipped_products",
]
