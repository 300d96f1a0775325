"""The catalog client against a real local HTTP server: answers, 5xx, timeouts, 4xx, cache."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devstack.parts import LOOPBACK, free_port
from shared.catalog import CatalogClient, CatalogUnavailable

pytestmark = pytest.mark.integration

PRODUCTS = [
    {
        "id": 1,
        "title": "Kettle",
        "price": 20.5,
        "description": "d",
        "category": "kitchen",
        "image": "http://img/1",
        "rating": {"rate": 4.1, "count": 12},
    }
]
SLOW_SECONDS = 1.0
TIMEOUT_SECONDS = 0.2


@dataclass
class Script:
    """What the server answers: the statuses of the next requests (then 200), or a delay."""

    statuses: list[int] = field(default_factory=list)
    delay_seconds: float = 0.0
    requests: int = 0


@pytest.fixture
def catalog_server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.requests += 1
            if script.delay_seconds:
                time.sleep(script.delay_seconds)
            status = script.statuses.pop(0) if script.statuses else 200
            body = json.dumps(PRODUCTS if status == 200 else {"error": "x"}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}", script
    finally:
        server.shutdown()
        server.server_close()


def client(url: str, **overrides: Any) -> CatalogClient:
    options: dict[str, Any] = {
        "timeout_seconds": TIMEOUT_SECONDS,
        "attempts": 3,
        "backoff_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "cache_ttl_seconds": 0,
    }
    options.update(overrides)
    return CatalogClient(url, **options)


async def test_reads_fakestoreapi_shaped_products(catalog_server: tuple[str, Script]) -> None:
    url, script = catalog_server
    catalog = client(url)
    products = await catalog.products()
    await catalog.aclose()
    assert [(p.id, p.title, p.rating.count) for p in products] == [("1", "Kettle", 12)]
    assert script.requests == 1


async def test_retries_5xx_then_succeeds(catalog_server: tuple[str, Script]) -> None:
    url, script = catalog_server
    script.statuses = [503, 500]
    catalog = client(url)
    assert len(await catalog.products()) == 1
    await catalog.aclose()
    assert script.requests == 3


async def test_persistent_5xx_is_catalog_unavailable(catalog_server: tuple[str, Script]) -> None:
    url, script = catalog_server
    script.statuses = [500, 502, 503, 504]
    catalog = client(url)
    with pytest.raises(CatalogUnavailable):
        await catalog.products()
    await catalog.aclose()
    assert script.requests == 3


async def test_4xx_is_not_retried(catalog_server: tuple[str, Script]) -> None:
    url, script = catalog_server
    script.statuses = [404]
    catalog = client(url)
    with pytest.raises(CatalogUnavailable):
        await catalog.products()
    await catalog.aclose()
    assert script.requests == 1


async def test_timeouts_are_retried_then_unavailable(catalog_server: tuple[str, Script]) -> None:
    url, script = catalog_server
    script.delay_seconds = SLOW_SECONDS
    catalog = client(url, attempts=2)
    with pytest.raises(CatalogUnavailable):
        await catalog.products()
    await catalog.aclose()
    assert script.requests == 2


async def test_connection_refused_is_unavailable() -> None:
    catalog = client(f"http://{LOOPBACK}:{free_port()}")
    with pytest.raises(CatalogUnavailable):
        await catalog.products()
    await catalog.aclose()


async def test_answers_are_cached_for_the_ttl(catalog_server: tuple[str, Script]) -> None:
    url, script = catalog_server
    catalog = client(url, cache_ttl_seconds=300)
    await catalog.products()
    await catalog.products()
    await catalog.aclose()
    assert script.requests == 1
    # Past the TTL (here: none) the catalog is read again.
    uncached = client(url, cache_ttl_seconds=0)
    await uncached.products()
    await uncached.products()
    await uncached.aclose()
    assert script.requests == 3


async def test_no_url_serves_the_shipped_catalog() -> None:
    catalog = CatalogClient(None)
    assert len(await catalog.products()) >= 60
