"""The overload phase of `make bench` against a stand-in of the gateway and the order service
(uvicorn on loopback): it tallies accepted and refused answers, reads every stored order back
page by page, and finds an accepted order that was not stored."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.overload import measure_overload
from bench.readback import PAGE
from tests.fixtures.apps import served

ADMITTED = PAGE + 50  # more than one page of orders to read back
REFUSED = 30
LOST = 1


class StandIn:
    """Admits the first ADMITTED orders, refuses the rest as the gateway does (503), and
    forgets to store the first LOST of those it admitted."""

    def __init__(self) -> None:
        self.placed = 0
        self.stored: list[str] = []

    async def graphql(self, _: Request) -> JSONResponse:
        self.placed += 1
        if self.placed > ADMITTED:
            error = {"message": "busy", "extensions": {"code": "SERVICE_UNAVAILABLE"}}
            return JSONResponse({"errors": [error]}, status_code=503)
        order_id = f"order-{self.placed}"
        if self.placed > LOST:
            self.stored.append(order_id)
        return JSONResponse({"data": {"placeOrder": {"id": order_id}}})

    async def orders(self, request: Request) -> JSONResponse:
        limit, offset = int(request.query_params["limit"]), int(request.query_params["offset"])
        return JSONResponse([{"id": i} for i in self.stored[offset : offset + limit]])


async def test_the_phase_tallies_answers_and_finds_an_accepted_order_not_stored() -> None:
    stand_in = StandIn()
    app = Starlette(
        routes=[
            Route("/graphql", stand_in.graphql, methods=["POST"]),
            Route("/orders", stand_in.orders),
        ]
    )
    sent = ADMITTED + REFUSED
    async with served(app) as base:
        result = await measure_overload(
            f"{base}/graphql", base, ["a-token"], rate=sent * 4, seconds=0.25
        )

    assert result["sent"] == sent
    assert (result["accepted"], result["refused"], result["errors"]) == (ADMITTED, REFUSED, 0)
    assert result["accepted_not_stored"] == LOST
    assert result["stored_not_accepted"] == 0
    assert set(result["accepted_latency"]) == {"p50_ms", "p99_ms", "max_ms"}
    assert result["driver_cpu_percent"] > 0  # the driver's own share of the machine
