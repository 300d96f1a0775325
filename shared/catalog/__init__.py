"""The product catalog: models, the HTTP client (with retries and a cache) and the shipped data."""

from shared.catalog.client import CatalogClient, CatalogUnavailable, products_url, shipped_products
from shared.catalog.models import Product, Rating
from shared.catalog.settings import CatalogServiceSettings

__all__ = [
    "CatalogClient",
    "CatalogServiceSettings",
    "CatalogUnavailable",
    "Product",
    "Rating",
    "products_url",
    "shipped_products",
]
