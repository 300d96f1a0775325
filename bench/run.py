"""`make bench` (issue 8): start the fleet as `make run` does (embedded parts, free ports,
loopback), measure it with wrk, print a table and write bench/results.json, stop everything.

Measured: (a) gateway cached `getUserDetails` (POST, and the same read as an automatic
persisted query by GET: hash only, issue 20), uncached (a second gateway with
CACHE_ENABLED=false) and `placeOrder`, (b) a bare FastAPI route doing the
same JWT check and Redis GET (bench/bare_app.py) and the gateway/bare ratio, (c) end-to-end
placeOrder -> notification latency at a fixed order rate (bench/e2e.py), (e) fleet
start-to-ready time and idle resident memory per service, (f) the cached read on a gateway
tracing 10% of requests (BENCH_TRACE_SAMPLING) beside the untraced one, (g) mails per second
from the notification service's sender to an SMTP sink (bench/mail.py, BENCH_MAIL_COUNT mails),
(h) placeOrder at twice the rate its own phase held (bench/overload.py): refused, not queued.
Servers are pinned to core 0, wrk to core 1, fixed concurrency (BENCH_CONNECTIONS, default 50),
BENCH_DURATION seconds (default 10).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.consumer import measure_consumer
from bench.e2e import measure_e2e
from bench.mail import measure_mail
from bench.overload import measure_overload
from bench.readback import stored_order_ids, topic_data
from bench.trace_sink import TraceSink
from devstack.config import environment_without_parts, new_jwt_secret
from devstack.mbox import Mailbox
from devstack.parts import free_port
from graphql_gateway.cache import DETAILS_VIEW, user_key
from graphql_gateway.persisted import document_hash
from shared.events import OrderPlaced
from shared.services import ORDER, SERVICES

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "bench"
RESULTS = BENCH_DIR / "results.json"
LUA = BENCH_DIR / "post.lua"
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
DURATION_SECONDS = int(os.environ.get("BENCH_DURATION", "10"))
WARMUP_SECONDS = int(os.environ.get("BENCH_WARMUP", "2"))
SERVER_CORE = os.environ.get("BENCH_SERVER_CORE", "0")
LOAD_CORE = os.environ.get("BENCH_LOAD_CORE", "1")
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 20.0
IDLE_SETTLE_SECONDS = 3.0
# How long the idle fleet's CPU is measured (after consumers have had time to doze).
IDLE_CPU_SECONDS = 30.0
SERVICE_NAMES = frozenset(service.name for service in SERVICES)
POLL_SECONDS = 0.05
HTTP_TIMEOUT_SECONDS = 10.0
MIB = 1024 * 1024
PYSPY = os.environ.get("BENCH_PYSPY", "")
PROFILE_TOP = 25
E2E_RATE = float(os.environ.get("BENCH_E2E_RATE", "100"))
E2E_SECONDS = float(os.environ.get("BENCH_E2E_SECONDS", "60"))
E2E_USERS = int(os.environ.get("BENCH_E2E_USERS", "10"))
E2E_DRAIN_SECONDS = float(os.environ.get("BENCH_E2E_DRAIN", "30"))
# placeOrder is measured this many times in a row (the machine's speed moves within a run);
# the sample of median throughput is the phase's figure, every sample is kept.
PLACE_ORDER_SAMPLES = int(os.environ.get("BENCH_PLACE_ORDER_SAMPLES", "3"))
# The cached read and the bare route measured back to back this many times (BENCH_PAIR_SECONDS
# each): the machine's speed moves within minutes, so the ratio of two runs minutes apart moved
# 0.56-0.96x between bench runs; the median of back-to-back pairs is the reported ratio.
RATIO_PAIRS = int(os.environ.get("BENCH_RATIO_PAIRS", "3"))
PAIR_SECONDS = int(os.environ.get("BENCH_PAIR_SECONDS", "5"))
# A collector pause at least this long shows in the overload phase's tallies (a bucket bound
# of shared.metrics.GC_PAUSE).
GC_LONG_PAUSE_SECONDS = 0.1
# (h) placeOrder offered at this multiple of the placeOrder phase's rate, for this long.
OVERLOAD_FACTOR = float(os.environ.get("BENCH_OVERLOAD_FACTOR", "2"))
OVERLOAD_SECONDS = float(os.environ.get("BENCH_OVERLOAD_SECONDS", "20"))
CONSUMER_EVENTS = int(os.environ.get("BENCH_CONSUMER_EVENTS", "50000"))
# (g) mails through the notification service's sender to an SMTP sink (issue 16); 0 skips it.
MAIL_COUNT = int(os.environ.get("BENCH_MAIL_COUNT", "3000"))
# (f) the cached read with tracing on at this sampling ratio (issue 19).
TRACE_SAMPLING = float(os.environ.get("BENCH_TRACE_SAMPLING", "0.1"))
TRACING_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)
MAIL_QUIET_SECONDS = 3.0
READ_BACK_TIMEOUT_SECONDS = 60.0
MAIL_SETTLE_TIMEOUT_SECONDS = 120.0
ALL_CORES = ",".join(str(n) for n in range(os.cpu_count() or 1))

REGISTER = """mutation Register($name: String!, $email: String!, $password: String!) {
  registerUser(name: $name, email: $email, password: $password) { token user { id } } }"""
DETAILS = "query { getUserDetails { id name email order_status } }"
PLACE = """mutation Place($products: [ProductInput!]!) {
  placeOrder(products: $products) { id status } }"""
# A real id of the shipped catalog (orders of unknown ids are refused).
PRODUCTS = [{"productId": "7"}]
PASSWORD = "bench-Password-123!"  # noqa: S105 - a throwaway user of a throwaway fleet

# Reference figures from issue 8 (one server core, wrk -c 50 on the other); targets from issues
# 8 and 16.
REFERENCE = {
    "node_apollo_gateway_cached_rps": 1300,
    "node_apollo_gateway_cached_p99_ms": "60-225",
    "bare_fastapi_rps": 2300,
    "bare_fastapi_p99_ms": 85,
    "naive_strawberry_fastapi_rps": 300,
    "strawberry_with_caches_rps": 760,
    "strawberry_asgi_direct_rps": 1330,
}
TARGETS = {
    "gateway_cached_rps_min": 2000,
    "gateway_over_bare_rps_ratio_min": 0.85,
    "uncached_rps_min": 1000,
    "uncached_over_bare_rps_ratio_min": 0.4,
    "place_order_rps_min": 360,
    "place_order_p99_ms_max": 250,
    "gateway_over_bare_p99_ratio_max": 2.0,
    "persisted_get_over_post_rps_ratio_min": 0.9,
    "e2e_p99_ms_max": 250,
    "e2e_rate_per_s_min": 100,
    "e2e_missing_after_drain_max": 0,
    "notification_consumer_events_per_s_min": 5000,
    "mail_per_second_min": 300,
    "fleet_ready_s_max": 15,
    "service_idle_rss_mb_max": 120,
    "idle_cpu_percent_max": 3.0,
    "fleet_total_rss_mb_max": 1024,
    "overload_accepted_p99_ms_max": 1000,
    "overload_accepted_not_stored_max": 0,
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (none if gone)."""
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (0 if gone)."""
    total = 0
    for p in tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def pin(pid: int, core: str) -> None:
    """Pin a process and all its threads (and children) to one core."""
    pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    for each in pids:
        subprocess.run(  # noqa: S603
            ["taskset", "-a", "-p", "-c", core, str(each)],  # noqa: S607 - util-linux, on PATH
            check=True,
            capture_output=True,
        )


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wrk(
    url: str,
    body: dict[str, Any] | None,
    token: str,
    duration: int,
    method: str = "POST",
    *,
    honour_retry_after: bool = False,
) -> dict[str, Any]:
    """One wrk run on the load core; the numbers its Lua `done` prints. `honour_retry_after`:
    a refused request's connection waits its Retry-After before the next one (bench/post.lua)."""
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(body) if body else "",
        "BENCH_TOKEN": token,
        "BENCH_METHOD": method,
        "BENCH_RETRY_AFTER": "1" if honour_retry_after else "",
    }
    command = [
        "taskset", "-c", LOAD_CORE,
        "wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{duration}s", "--latency",
        "-s", str(LUA), url,
    ]  # fmt: skip
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout  # noqa: S603
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    # Answers without an error: for placeOrder, the orders placed (a refusal for overload,
    # answered at once, would otherwise count as throughput).
    answered_ok = raw["requests"] - max(raw["non2xx"], raw["gql_errors"])
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1),
        "answered_ok": answered_ok,
        "ok_rps": round(answered_ok / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "socket_errors": raw["socket_errors"],
        "non2xx": raw["non2xx"],
        "graphql_errors": raw["gql_errors"],
    }


def measure(
    name: str, url: str, body: dict[str, Any] | None, token: str, method: str = "POST"
) -> dict[str, Any]:
    warmup = wrk(url, body, token, WARMUP_SECONDS, method)["requests"] if WARMUP_SECONDS else 0
    result = wrk(url, body, token, DURATION_SECONDS, method)
    result["warmup_requests"] = warmup
    log(f"{name}: {result['rps']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    return result


def measure_with_fleet_cpu(
    name: str,
    url: str,
    body: dict[str, Any],
    token: str,
    state: dict[str, Any],
    *,
    honour_retry_after: bool = False,
) -> dict[str, Any]:
    """`measure`, with the CPU the whole fleet (services and embedded parts) spent per request
    of the measured run: `fleet_cpu_ms_per_request`, and by process."""
    pids = dict(state["pids"])
    warmup = (
        wrk(url, body, token, WARMUP_SECONDS, honour_retry_after=honour_retry_after)
        if WARMUP_SECONDS
        else {"answered_ok": 0}
    )
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    result = wrk(url, body, token, DURATION_SECONDS, honour_retry_after=honour_retry_after)
    spent = {name: tree_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    # Per request answered without error (per order placed): refusals cost little, do nothing.
    requests = max(result["answered_ok"], 1)
    result["warmup_answered_ok"] = warmup["answered_ok"]
    result["cpu_ms_per_request_by_process"] = {
        name: round(seconds * 1000 / requests, 3)
        for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])
    }
    result["fleet_cpu_ms_per_request"] = round(sum(spent.values()) * 1000 / requests, 3)
    log(
        f"{name}: {result['rps']} req/s ({result['ok_rps']} without error), p50 "
        f"{result['p50_ms']} ms, p99 {result['p99_ms']} ms, fleet CPU "
        f"{result['fleet_cpu_ms_per_request']} ms a request"
    )
    return result


def paired_ratios(
    gateway_url: str, bare_url: str, token: str, refill: Callable[[], None]
) -> dict[str, Any]:
    """The cached read and the bare route, back to back RATIO_PAIRS times (their cache entry
    filled anew first: the pairs must not outlast CACHE_TTL_SECONDS); each pair's throughput and
    p99 ratios and their medians."""
    refill()
    pairs = []
    for _ in range(RATIO_PAIRS):
        gateway = wrk(gateway_url, {"query": DETAILS}, token, PAIR_SECONDS)
        bare = wrk(bare_url, {}, token, PAIR_SECONDS)
        if gateway["non2xx"] or bare["non2xx"]:
            raise RuntimeError(f"a pair answered errors: gateway {gateway}, bare {bare}")
        pairs.append(
            {
                "gateway_rps": gateway["rps"],
                "bare_rps": bare["rps"],
                "rps_ratio": round(gateway["rps"] / bare["rps"], 3),
                "p99_ratio": round(gateway["p99_ms"] / bare["p99_ms"], 3),
            }
        )
    result = {
        "pairs": pairs,
        "rps_ratio_median": statistics.median(p["rps_ratio"] for p in pairs),
        "p99_ratio_median": statistics.median(p["p99_ratio"] for p in pairs),
    }
    log(f"cached read / bare route, {RATIO_PAIRS} back-to-back pairs: {result}")
    return result


def median_sample(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample of median throughput without errors (the lower middle one of an even
    count)."""
    return sorted(samples, key=lambda r: r["ok_rps"])[(len(samples) - 1) // 2]


def profile(pid: int, url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    """py-spy (BENCH_PYSPY=<its path>) on the gateway during one more wrk run: the frames with
    the most samples, inclusive and self (collapsed stacks kept in bench/profile-gateway.txt)."""
    out = BENCH_DIR / "profile-gateway.txt"
    spy = subprocess.Popen(  # noqa: S603
        [PYSPY, "record", "--pid", str(pid), "--duration", str(DURATION_SECONDS),
         "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wrk(url, body, token, DURATION_SECONDS)
    spy.wait(timeout=DURATION_SECONDS + STOP_TIMEOUT_SECONDS)
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:PROFILE_TOP]
        return [(frame, round(100 * n / max(total, 1), 1)) for frame, n in best]

    return {"samples": total, "top_self_pct": top(own), "top_inclusive_pct": top(inclusive)}


def gql(client: httpx.Client, url: str, query: str, variables: Any = None, token: str = "") -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = client.post(url, json={"query": query, "variables": variables}, headers=headers)
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def persisted_get_url(client: httpx.Client, url: str, query: str, token: str) -> str:
    """Register `query` as an automatic persisted query (its text and hash once, by POST); the
    URL that reads it by GET with the hash alone, as Apollo's persisted-query link does."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": document_hash(query)}}
    answer = client.post(
        url,
        json={"query": query, "extensions": extensions},
        headers={"authorization": f"Bearer {token}"},
    )
    answer.raise_for_status()
    return f"{url}?{urlencode({'extensions': json.dumps(extensions)})}"


def register(client: httpx.Client, url: str) -> tuple[str, str]:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    data = gql(client, url, REGISTER, {"name": "Bench", "email": email, "password": PASSWORD})
    return data["registerUser"]["user"]["id"], data["registerUser"]["token"]


def customers(url: str, count: int) -> list[str]:
    """The tokens of `count` new customers."""
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as client:
        return [register(client, url)[1] for _ in range(count)]


# Far above any rate wrk reaches: the benchmark measures the fleet, not its abuse limits.
BENCH_USER_LIMITS = {
    "PLACE_ORDER_LIMIT_PER_USER": "100000000/minute",
    "RECOMMENDATION_LIMIT_PER_USER": "100000000/minute",
}


def start_fleet(
    workdir: Path, secret: str
) -> tuple[subprocess.Popen[bytes], dict[str, Any], float]:
    state_file = workdir / "stack-state.json"
    command = [
        sys.executable, "-m", "devstack", "--free-ports",
        "--state-file", str(state_file), "--mail-dir", str(workdir / "mail"),
        "--ready-timeout", str(READY_TIMEOUT_SECONDS),
    ]  # fmt: skip
    env = untraced_environment()
    env["JWT_SECRET"] = secret
    # The gateway's per-user limits would answer RATE_LIMITED to the benchmark's one user.
    env.update(BENCH_USER_LIMITS)
    started = time.monotonic()
    with (workdir / "stack.log").open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = started + READY_TIMEOUT_SECONDS + STOP_TIMEOUT_SECONDS
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = (workdir / "stack.log").read_text(errors="replace")[-4000:]
            stop(process)
            raise RuntimeError(f"the fleet did not become ready:\n{tail}")
        time.sleep(POLL_SECONDS)
    ready_seconds = time.monotonic() - started
    return process, json.loads(state_file.read_text()), ready_seconds


def untraced_environment() -> dict[str, str]:
    """The environment without parts nor tracing: the fleet measured is the untraced one."""
    env = environment_without_parts()
    for name in TRACING_VARIABLES:
        env.pop(name, None)
    return env


def start_gateway(
    state: dict[str, Any], secret: str, workdir: Path, name: str, settings: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """Another gateway on the running fleet with `settings` in its environment, pinned to the
    server core from its start: CACHE_ENABLED=false (every getUserDetails goes to the user
    service), or tracing on."""
    port = free_port()
    env = untraced_environment()
    env.update(
        {
            "JWT_SECRET": secret,
            "KAFKA_BROKER": state["kafka"],
            "REDIS_URL": state["redis"],
            "HOST": "127.0.0.1",
            "PORT": str(port),
            **BENCH_USER_LIMITS,
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
    )
    for service, base_url in state["services"].items():
        env[f"{service.upper()}_URL"] = base_url
    with (workdir / f"{name}-gateway.log").open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "graphql_gateway"],  # noqa: S607
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if (
                httpx.get(f"{base}/ready", timeout=HTTP_TIMEOUT_SECONDS).status_code
                == httpx.codes.OK
            ):
                return process, f"{base}/graphql"
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(POLL_SECONDS)
    stop(process)
    raise RuntimeError(f"the {name} gateway did not become ready")


def measure_tracing(
    state: dict[str, Any], secret: str, workdir: Path, token: str, gw: dict[str, Any]
) -> dict[str, Any]:
    """The cached read on a gateway tracing at TRACE_SAMPLING (spans exported over OTLP/HTTP
    to a stand-in collector), beside the untraced gateway's figures of the same run."""
    sink = TraceSink(free_port()).start()
    traced, traced_url = start_gateway(
        state,
        secret,
        workdir,
        "traced",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(TRACE_SAMPLING),
        },
    )
    try:
        on = measure(
            f"gateway cached getUserDetails, tracing {TRACE_SAMPLING:.0%}",
            traced_url,
            {"query": DETAILS},
            token,
        )
    finally:
        stop(traced)
        sink.stop()
    off = gw["cached_getUserDetails"]
    return {
        "sampling": TRACE_SAMPLING,
        "cached_getUserDetails_traced": on,
        "rps_traced_over_untraced": round(on["rps"] / off["rps"], 3),
        "p99_traced_over_untraced": round(on["p99_ms"] / off["p99_ms"], 3),
        "otlp_exports": sink.exports,
        "otlp_bytes": sink.received_bytes,
    }


async def orders_stored_and_announced(
    state: dict[str, Any], buyer_id: str, buyer_token: str, answered: int
) -> dict[str, Any]:
    """After the placeOrder phase: the buyer's orders in the order service and on
    `order.placed`. Every answered order must be both; wrk stops with up to CONNECTIONS
    requests in flight in each of its two runs, which may be stored without being counted."""
    stored = await stored_order_ids(state["services"][ORDER.name], [buyer_token])
    placed = await topic_data(
        state["kafka"],
        OrderPlaced.topic,
        lambda key: key == buyer_id.encode(),
        time.monotonic() + READ_BACK_TIMEOUT_SECONDS,
    )
    announced = {data["order_id"] for data in placed}
    return {
        "answered": answered,
        "stored": len(stored),
        "announced": len(announced),
        "stored_not_announced": len(stored - announced),
        "answered_not_stored": max(0, answered - len(stored)),
        "in_flight_at_stop_max": 2 * PLACE_ORDER_SAMPLES * CONNECTIONS,
    }


def gc_pauses(state: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each service's collector pauses so far (its `python_gc_pause_seconds`, all generations):
    how many, their total seconds, and how many took longer than GC_LONG_PAUSE_SECONDS."""
    pauses: dict[str, dict[str, float]] = {}
    for service, base_url in state["services"].items():
        try:
            text = httpx.get(f"{base_url}/metrics", timeout=HTTP_TIMEOUT_SECONDS).text
        except httpx.HTTPError:
            continue
        row = {"count": 0.0, "seconds": 0.0, "long": 0.0}
        for family in text_string_to_metric_families(text):
            if family.name != "python_gc_pause_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    row["count"] += sample.value
                elif sample.name.endswith("_sum"):
                    row["seconds"] += sample.value
                elif sample.labels.get("le") == str(GC_LONG_PAUSE_SECONDS):
                    row["long"] -= sample.value  # the long ones: the count minus these
        row["long"] += row["count"]
        pauses[service] = row
    return pauses


def pauses_during(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """The collector pauses between two `gc_pauses` readings, per service."""
    return {
        service: {
            key: round(value - before.get(service, {}).get(key, 0.0), 4)
            for key, value in row.items()
        }
        for service, row in after.items()
    }


def measure_overload_phase(
    url: str, order_service_url: str, held_rps: float, state: dict[str, Any]
) -> dict[str, Any]:
    """(h) placeOrder offered at OVERLOAD_FACTOR times `held_rps` (what the placeOrder phase
    held) by customers of their own, the driver on the load core as wrk is; with the CPU the
    driver and the fleet used meanwhile (in % of one core)."""
    tokens = customers(url, E2E_USERS)
    fleet_cpu_before = sum(tree_cpu_seconds(pid) for pid in state["pids"].values())
    rate = OVERLOAD_FACTOR * held_rps
    log(f"overload: placeOrder at {rate:.0f}/s ({OVERLOAD_FACTOR:g}x {held_rps}/s)")
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    try:
        overload = asyncio.run(
            measure_overload(url, order_service_url, tokens, rate=rate, seconds=OVERLOAD_SECONDS)
        )
    finally:
        os.sched_setaffinity(0, cores)
    # The read-back after the phase is a few requests: the phase's own CPU, near enough.
    fleet_cpu = sum(tree_cpu_seconds(pid) for pid in state["pids"].values()) - fleet_cpu_before
    overload["fleet_cpu_percent"] = round(fleet_cpu * 100 / overload["answered_seconds"], 1)
    log(f"overload: {overload}")
    return overload


def wait_for_mail_to_settle(mail_dir: Path) -> float:
    """Wait until the SMTP sink has received nothing new for MAIL_QUIET_SECONDS (at most
    MAIL_SETTLE_TIMEOUT_SECONDS); the seconds waited."""
    started = time.monotonic()
    count, quiet_since = -1, started
    mailbox = Mailbox(mail_dir)
    while time.monotonic() - started < MAIL_SETTLE_TIMEOUT_SECONDS:
        now_count = mailbox.count()
        if now_count != count:
            count, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since >= MAIL_QUIET_SECONDS:
            break
        time.sleep(POLL_SECONDS * 10)
    return time.monotonic() - started


def stop(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants so far (0 if gone)."""
    total = 0.0
    for p in tree(pid):
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def idle_cpu(state: dict[str, Any]) -> dict[str, float]:
    """Percent of one core each process of the idle fleet used over IDLE_CPU_SECONDS; TOTAL is
    the services', ALL adds the embedded parts (broker, Redis, SMTP sink)."""
    pids = dict(state["pids"])
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(IDLE_CPU_SECONDS)
    rows = {
        name: round((tree_cpu_seconds(pid) - before[name]) / IDLE_CPU_SECONDS * 100, 2)
        for name, pid in pids.items()
    }
    services = [name for name in rows if name in SERVICE_NAMES]
    rows["TOTAL"] = round(sum(rows[name] for name in services), 2)
    rows["ALL"] = round(sum(v for k, v in rows.items() if k != "TOTAL"), 2)
    return rows


def memory(state: dict[str, Any]) -> dict[str, float]:
    rows = {name: round(tree_rss(pid) / MIB, 1) for name, pid in state["pids"].items()}
    rows["supervisor"] = round(psutil.Process(state["supervisor_pid"]).memory_info().rss / MIB, 1)
    rows["TOTAL"] = round(sum(rows.values()), 1)
    return rows


def run() -> dict[str, Any]:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (apt-get install -y wrk util-linux)")
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "conditions": {
            "connections": CONNECTIONS,
            "threads": 1,
            "duration_s": DURATION_SECONDS,
            "warmup_s": WARMUP_SECONDS,
            "server_core": SERVER_CORE,
            "load_core": LOAD_CORE,
        },
        "reference": REFERENCE,
        "targets": TARGETS,
    }
    secret = new_jwt_secret()
    fleet: subprocess.Popen[bytes] | None = None
    bare: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        try:
            log("starting the fleet (python -m devstack --free-ports)")
            fleet, state, ready_seconds = start_fleet(workdir, secret)
            log(f"fleet ready in {ready_seconds:.1f} s")
            results["fleet_ready_s"] = round(ready_seconds, 2)
            time.sleep(IDLE_SETTLE_SECONDS)
            results["idle_rss_mb"] = memory(state)
            log(f"idle CPU over {IDLE_CPU_SECONDS:.0f} s")
            results["idle_cpu_percent_by_process"] = idle_cpu(state)
            results["idle_cpu_percent"] = results["idle_cpu_percent_by_process"]["TOTAL"]
            url = state["graphql"]
            gateway_pid = state["pids"]["graphql_gateway"]
            with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as client:
                reader_id, reader_token = register(client, url)
                buyer_id, buyer_token = register(client, url)
                gql(client, url, DETAILS, token=reader_token)  # primes the cache
                persisted_url = persisted_get_url(client, url, DETAILS, reader_token)
                gql(client, url, PLACE, {"products": PRODUCTS}, token=buyer_token)
            cache = redis.Redis.from_url(state["redis"])
            if cache.hget(user_key(reader_id), DETAILS_VIEW) is None:
                raise RuntimeError("getUserDetails did not fill the gateway's cache")
            pin(gateway_pid, SERVER_CORE)

            gw: dict[str, Any] = {}
            gw["cached_getUserDetails"] = measure(
                "gateway cached getUserDetails", url, {"query": DETAILS}, reader_token
            )
            # The same cached answer (one entry: the operation, whichever way it came).
            gw["persisted_get_cached_getUserDetails"] = measure(
                "gateway persisted GET cached getUserDetails", persisted_url, None, reader_token,
                method="GET",
            )  # fmt: skip
            if cache.hget(user_key(reader_id), DETAILS_VIEW) is None:
                raise RuntimeError("the cache entry vanished during the run (not all cached)")

            uncached, uncached_url = start_gateway(
                state, secret, workdir, "uncached", {"CACHE_ENABLED": "false"}
            )
            try:
                gw["uncached_getUserDetails"] = measure(
                    "gateway uncached getUserDetails", uncached_url, {"query": DETAILS},
                    reader_token,
                )  # fmt: skip
            finally:
                stop(uncached)
            results["tracing"] = measure_tracing(state, secret, workdir, reader_token, gw)

            # The reader's cache hash lives CACHE_TTL_SECONDS from its first fill, which the
            # phases above can outlast (or leave seconds short of): drop it and fill it anew,
            # so the bare route has what it reads for the whole of its run.
            cache.delete(user_key(reader_id))
            with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as client:
                gql(client, url, DETAILS, token=reader_token)
            if cache.hget(user_key(reader_id), DETAILS_VIEW) is None:
                raise RuntimeError("getUserDetails did not fill the gateway's cache again")
            port = free_port()
            bare_env = {**os.environ, "REDIS_URL": state["redis"], "JWT_SECRET": secret}
            bare = subprocess.Popen(  # noqa: S603
                ["taskset", "-c", SERVER_CORE,  # noqa: S607 - util-linux, on PATH
                 sys.executable, "-m", "bench.bare_app", "--port", str(port)],
                cwd=REPO_ROOT, env=bare_env,
            )  # fmt: skip
            wait_port(port, READY_TIMEOUT_SECONDS)
            bare_url = f"http://127.0.0.1:{port}/me"
            check = httpx.post(
                bare_url, headers={"authorization": f"Bearer {reader_token}"}, content=b"{}"
            )
            if check.status_code != httpx.codes.OK:
                raise RuntimeError(f"the bare app answered {check.status_code}")
            results["bare_jwt_redis"] = measure_with_fleet_cpu(
                "bare FastAPI JWT+Redis", bare_url, {}, reader_token,
                {"pids": {"bare": bare.pid, "redis": state["pids"]["redis"]}},
            )  # fmt: skip
            if results["bare_jwt_redis"]["non2xx"]:
                # A reference that answered errors measures nothing worth a ratio.
                raise RuntimeError(f"the bare app answered errors: {results['bare_jwt_redis']}")

            def refill_reader_cache() -> None:
                cache.delete(user_key(reader_id))
                with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as client:
                    gql(client, url, DETAILS, token=reader_token)

            if RATIO_PAIRS > 0:
                results["cached_over_bare_pairs"] = paired_ratios(
                    url, bare_url, reader_token, refill_reader_cache
                )
            stop(bare)
            bare = None

            if E2E_SECONDS > 0:
                # (c) with the gateway free to use both cores, as the rest of the fleet.
                pin(gateway_pid, ALL_CORES)
                tokens = customers(url, E2E_USERS)
                log(f"e2e: {E2E_RATE:g} orders/s for {E2E_SECONDS:g} s over {E2E_USERS} customers")
                results["e2e_order_to_notification"] = e2e = asyncio.run(
                    measure_e2e(
                        url,
                        tokens,
                        rate=E2E_RATE,
                        seconds=E2E_SECONDS,
                        drain_seconds=E2E_DRAIN_SECONDS,
                    )
                )
                log(f"e2e: {e2e}")
                pin(gateway_pid, SERVER_CORE)

            samples = [
                measure_with_fleet_cpu(
                    f"gateway placeOrder ({n + 1}/{PLACE_ORDER_SAMPLES})", url,
                    {"query": PLACE, "variables": {"products": PRODUCTS}}, buyer_token, state,
                    honour_retry_after=True,
                )
                for n in range(PLACE_ORDER_SAMPLES)
            ]  # fmt: skip
            gw["placeOrder"] = median_sample(samples)
            gw["placeOrder_samples"] = samples
            results["placeOrder_read_back"] = read_back = asyncio.run(
                orders_stored_and_announced(
                    state, buyer_id, buyer_token,
                    answered=1 + sum(r["warmup_answered_ok"] + r["answered_ok"] for r in samples),
                )
            )  # fmt: skip
            log(f"placeOrder read back: {read_back}")
            results["gateway"] = gw
            if OVERLOAD_SECONDS > 0:
                pauses_before = gc_pauses(state)
                results["overload"] = measure_overload_phase(
                    url, state["services"][ORDER.name], gw["placeOrder"]["ok_rps"], state
                )
                results["overload"]["gc_pauses"] = pauses_during(pauses_before, gc_pauses(state))
            cached, base = gw["cached_getUserDetails"], results["bare_jwt_redis"]
            pairs = results.get("cached_over_bare_pairs")
            single_rps_ratio = round(cached["rps"] / base["rps"], 3)
            single_p99_ratio = round(cached["p99_ms"] / base["p99_ms"], 3)
            results["ratios"] = {
                # The back-to-back pairs' medians where measured; else the two phases' runs.
                "gateway_over_bare_rps": pairs["rps_ratio_median"] if pairs else single_rps_ratio,
                "gateway_over_bare_p99": pairs["p99_ratio_median"] if pairs else single_p99_ratio,
                "gateway_over_bare_rps_phases": single_rps_ratio,
                "persisted_get_over_post_rps": round(
                    gw["persisted_get_cached_getUserDetails"]["rps"] / cached["rps"], 3
                ),
            }
            if CONSUMER_EVENTS > 0:
                # (d) last: the 50,000 stored notifications stay in the store. The mail of the
                # orders above goes out first, or the sender competes with the consumer.
                settled = wait_for_mail_to_settle(workdir / "mail")
                log(f"mail settled after {settled:.1f} s")
                log(f"notification consumer: {CONSUMER_EVENTS} events")
                results["notification_consumer"] = consumer = asyncio.run(
                    measure_consumer(state["kafka"], events=CONSUMER_EVENTS)
                )
                log(f"notification consumer: {consumer}")
            if MAIL_COUNT > 0:
                # Its own sink and sender processes, after the fleet's load: nothing competes.
                log(f"mail: {MAIL_COUNT} mails through the sender to an SMTP sink")
                results["mail"] = mail = measure_mail(MAIL_COUNT)
                results["mail_per_second"] = mail["mail_per_second"]
                log(f"mail: {mail}")
            results["after_load_rss_mb"] = memory(state)
            if PYSPY:
                # Cached again: the entries of the start have outlived CACHE_TTL_SECONDS.
                with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as client:
                    gql(client, url, DETAILS, token=reader_token)
                results["profile_cached_getUserDetails"] = profile(
                    gateway_pid, url, {"query": DETAILS}, reader_token
                )
        finally:
            stop(bare)
            stop(fleet)
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"wrk -t1 -c{CONNECTIONS} -d{DURATION_SECONDS}s, server on core {SERVER_CORE}, "
        f"wrk on core {LOAD_CORE}",
        f"{'endpoint':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non2xx':>7} {'gqlerr':>7} {'sockerr':>7}",
    ]
    rows = [
        ("gateway cached getUserDetails", results["gateway"]["cached_getUserDetails"]),
        (
            "  same, persisted query by GET",
            results["gateway"]["persisted_get_cached_getUserDetails"],
        ),
        ("gateway uncached getUserDetails", results["gateway"]["uncached_getUserDetails"]),
        ("bare FastAPI JWT + Redis GET", results["bare_jwt_redis"]),
        ("gateway placeOrder", results["gateway"]["placeOrder"]),
    ]
    for name, r in rows:
        lines.append(
            f"{name:34} {r['rps']:>9} {r['p50_ms']:>8} {r['p99_ms']:>8} "
            f"{r['non2xx']:>7} {r['graphql_errors']:>7} {r['socket_errors']:>7}"
        )
    traced = results.get("tracing")
    if traced:
        r = traced["cached_getUserDetails_traced"]
        name = f"cached read, tracing {traced['sampling']:.0%}"
        lines.append(
            f"{name:34} {r['rps']:>9} {r['p50_ms']:>8} {r['p99_ms']:>8} "
            f"{r['non2xx']:>7} {r['graphql_errors']:>7} {r['socket_errors']:>7}"
        )
        lines.append(
            f"tracing {traced['sampling']:.0%} / off: throughput "
            f"{traced['rps_traced_over_untraced']}x, p99 {traced['p99_traced_over_untraced']}x "
            f"({traced['otlp_exports']} OTLP exports)"
        )
    ratios = results["ratios"]
    lines.append(
        f"gateway/bare: throughput {ratios['gateway_over_bare_rps']}x (target >= 0.85), "
        f"p99 {ratios['gateway_over_bare_p99']}x (target <= 2)"
        + (
            f", the median of {len(results['cached_over_bare_pairs']['pairs'])} back-to-back "
            f"pairs (the phases above, minutes apart: {ratios['gateway_over_bare_rps_phases']}x)"
            if "cached_over_bare_pairs" in results
            else ""
        )
    )
    lines.append(
        f"persisted GET/POST of the cached read: throughput "
        f"{ratios['persisted_get_over_post_rps']}x (target >= 0.9: within noise)"
    )
    gateway, bare = results["gateway"], results["bare_jwt_redis"]
    uncached, place = gateway["uncached_getUserDetails"], gateway["placeOrder"]
    lines.append(
        f"uncached read: {uncached['rps']} req/s (target >= 1000), "
        f"{round(uncached['rps'] / bare['rps'], 3)}x the bare route (target >= 0.4)"
    )
    samples = gateway.get("placeOrder_samples", [place])
    refused = " / ".join(str(r["requests"] - r["answered_ok"]) for r in samples)
    lines.append(
        f"placeOrder: {' / '.join(str(r['ok_rps']) for r in samples)} orders/s (median "
        f"{place['ok_rps']}, target >= 360), p99 {' / '.join(str(r['p99_ms']) for r in samples)} "
        f"ms (target < 250), answered with an error {refused}"
    )
    if "fleet_cpu_ms_per_request" in place and "fleet_cpu_ms_per_request" in bare:
        lines.append(
            f"  fleet CPU per order {place['fleet_cpu_ms_per_request']} ms, "
            f"{round(place['fleet_cpu_ms_per_request'] / bare['fleet_cpu_ms_per_request'], 1)}x "
            f"a bare request's {bare['fleet_cpu_ms_per_request']} ms (the bare app and Redis); "
            f"by process: {place['cpu_ms_per_request_by_process']}"
        )
    read_back = results.get("placeOrder_read_back")
    if read_back:
        lines.append(
            f"placeOrder read back: {read_back['answered']} answered, {read_back['stored']} "
            f"stored, {read_back['announced']} on order.placed; answered but not stored "
            f"{read_back['answered_not_stored']} (target 0), stored but not announced "
            f"{read_back['stored_not_announced']} (target 0)"
        )
    lines.append(f"fleet start-to-ready: {results['fleet_ready_s']} s (target < 15)")
    overload = results.get("overload")
    if overload:
        accepted = overload["accepted_latency"]
        lines.append(
            f"overload: placeOrder offered at {overload['offered_rate_per_s']}/s "
            f"(target {overload['target_rate_per_s']}/s): {overload['accepted']} accepted "
            f"({overload['accepted_per_s']}/s, p50 {accepted.get('p50_ms')} ms, p99 "
            f"{accepted.get('p99_ms')} ms; target p99 < 1000), {overload['refused']} refused "
            f"SERVICE_UNAVAILABLE (p99 {overload['refused_latency'].get('p99_ms')} ms), "
            f"{overload['errors']} errors {overload['error_kinds'] or ''}; accepted not stored: "
            f"{overload['accepted_not_stored']} (target 0)"
        )
        lines.append(
            f"  CPU meanwhile: the driver {overload['driver_cpu_percent']}% of the load core, the "
            f"fleet {overload['fleet_cpu_percent']}% of one core (of {os.cpu_count()})"
        )
        pauses = overload.get("gc_pauses", {})
        lines.append(
            "  collector pauses meanwhile (count, seconds in all, longer than "
            f"{GC_LONG_PAUSE_SECONDS * 1000:g} ms): "
            + ", ".join(
                f"{service} {row['count']:g}, {row['seconds']:.3f}, {row['long']:g}"
                for service, row in pauses.items()
            )
        )
    e2e = results.get("e2e_order_to_notification")
    if e2e:
        lines.append(
            f"e2e placeOrder offered at {e2e.get('offered_rate_per_s')}/s (target "
            f"{e2e['rate_per_s']:g}/s, driver at most {e2e.get('driver_max_behind_schedule_ms')} "
            f"ms behind), placed at {e2e['achieved_rate_per_s']}/s (answers p50 "
            f"{e2e.get('placeOrder_p50_ms')} ms, p99 {e2e.get('placeOrder_p99_ms')} ms; "
            f"{e2e['place_failures']} failed {e2e.get('place_error_kinds') or ''})"
        )
        lines.append(
            f"  returned -> notification stored: p50 {e2e.get('stored_p50_ms')} ms, p99 "
            f"{e2e.get('stored_p99_ms')} ms (target p99 < 250); -> delivered on the "
            f"subscription: p50 {e2e.get('p50_ms')} ms, p99 {e2e.get('p99_ms')} ms; "
            f"{e2e['notified']}/{e2e['orders_placed']} notified, lost "
            f"{e2e['missing_after_drain']} (target 0)"
        )
    consumer = results.get("notification_consumer")
    if consumer:
        lines.append(
            f"notification consumer: {consumer['events_per_s']} events/s for "
            f"{consumer['stored']} events (target > 5000), exactly once: "
            f"{consumer.get('exactly_once')}"
        )
    idle = results["idle_cpu_percent_by_process"]
    lines.append(
        f"idle CPU over {IDLE_CPU_SECONDS:.0f} s: services {idle['TOTAL']}% of a core "
        f"(target < 3), with the embedded parts {idle['ALL']}%"
    )
    mail = results.get("mail")
    if mail:
        lines.append(
            f"mail: {mail['mail_per_second']} mails/s to the SMTP sink ({mail['sent']} mails over "
            f"{mail['smtp_connections_opened']} connections; target >= 300)"
        )
    lines.append(f"{'resident MB':24} {'idle':>8} {'after load':>11}")
    for name, mb in results["idle_rss_mb"].items():
        lines.append(f"{name:24} {mb:>8} {results['after_load_rss_mb'].get(name, ''):>11}")
    return "\n".join(lines)


def main() -> None:
    results = run()
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"results written to {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
