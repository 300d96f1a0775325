"""shared/gc_tuning.py: a service process freezes its start-up heap and paces the collector as
GC_GEN0_THRESHOLD says (checked in a fresh interpreter: the test process keeps its own)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest
from prometheus_client import REGISTRY

from shared.gc_tuning import OLDER_GENERATION_PASSES, record_gc_pauses
from shared.settings import ServiceSettings

PROBE = """
import gc, json, sys
from shared.gc_tuning import tune_garbage_collector
before = gc.get_threshold()
tune_garbage_collector(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def tuned(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", PROBE, str(threshold)], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, list[int] | int] = json.loads(out)
    return result


def test_the_start_up_heap_is_frozen_and_the_youngest_generation_paced() -> None:
    result = tuned(50_000)
    assert result["after"] == [50_000, *OLDER_GENERATION_PASSES]
    assert isinstance(result["frozen"], int) and result["frozen"] > 1_000


def test_zero_keeps_pythons_thresholds_but_still_freezes() -> None:
    result = tuned(0)
    assert result["after"] == result["before"]
    assert isinstance(result["frozen"], int) and result["frozen"] > 1_000


def test_the_default_is_fifty_thousand_and_negative_is_refused() -> None:
    assert ServiceSettings.model_fields["gc_gen0_threshold"].default == 50_000
    with pytest.raises(ValueError, match="gc_gen0_threshold"):
        ServiceSettings(gc_gen0_threshold=-1)


def test_every_service_process_tunes_it_after_building_its_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi import FastAPI

    from shared import serve

    steps: list[str | int] = []
    app = FastAPI()

    def create_app(settings: ServiceSettings) -> FastAPI:
        steps.append("app built")
        return app

    monkeypatch.setattr(serve, "configure_logging", lambda *args, **kwargs: None)
    monkeypatch.setattr(serve, "tune_garbage_collector", steps.append)
    monkeypatch.setattr(serve, "record_gc_pauses", lambda service: steps.append(f"{service} gc"))
    monkeypatch.setattr(serve, "_serve", lambda served, _: steps.append("served"))
    serve.run_service(
        create_app,
        ServiceSettings.model_construct(gc_gen0_threshold=1234, service_name="svc"),
    )
    assert steps == ["app built", 1234, "svc gc", "served"]


def test_every_collection_is_observed_as_a_pause_of_its_generation() -> None:
    def count(generation: int) -> float:
        labels = {"service": "gc-probe", "generation": str(generation)}
        return REGISTRY.get_sample_value("python_gc_pause_seconds_count", labels) or 0.0

    callbacks = list(gc.callbacks)
    gc.disable()  # only the collections asked for below
    try:
        record_gc_pauses("gc-probe")
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        gc.callbacks[:] = callbacks
        gc.enable()
    assert (count(0), count(1), count(2)) == (1.0, 0.0, 2.0)
