"""The edge counts real clients (issue 13): compose and k8s, rendered, make the user service
believe the client address the gateway forwards and the gateway believe only its own proxies;
and a real gateway in front of a real user service, configured as compose configures them,
gives two clients behind it separate login budgets."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from fastapi import FastAPI

import user_service.main as user_main
from devstack.compose_check import render
from devstack.parts import LOOPBACK, free_port
from shared.http import proxy_list
from tests.fixtures.apps import asgi_client, own_consumer_group, running_service, service_settings
from tests.security.conftest import gateway_settings, running_gateway, send_users_to, unique_email
from tests.unit.test_compose import k8s_documents
from tests.unit.test_stack_launcher import environment_of
from user_service.settings import UserSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_ENV = {"JWT_SECRET": "rendered-by-the-edge-test-" + uuid.uuid4().hex}
LOGIN_PER_ADDRESS = 3
LOAD_BALANCER = "203.0.113.10"  # TEST-NET-3: a load balancer in front of the gateway


def compose(**environ: str) -> dict[str, Any]:
    return render(ROOT / "docker-compose.yml", {**COMPOSE_ENV, **environ})


def k8s() -> list[dict[str, Any]]:
    """The manifests as `kubectl kustomize` renders them (as listed, without kubectl)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return k8s_documents()
    rendered = subprocess.run(  # noqa: S603 - kubectl from PATH, fixed arguments
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [item for item in yaml.safe_load_all(rendered.stdout) if item]


def container_env(documents: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The environment a Deployment's container gets (its ConfigMap, then its own env)."""
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    deployment = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    own = {item["name"]: item["value"] for item in container.get("env", [])}
    return {**config, **own}


def networks(proxies: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item) for item in proxy_list(proxies)]


def covers(proxies: str, network: str) -> bool:
    wanted = ipaddress.ip_network(network)
    return any(
        wanted.version == trusted.version and wanted.subnet_of(trusted)  # type: ignore[arg-type]
        for trusted in networks(proxies)
    )


def fleet_subnet(document: dict[str, Any]) -> str:
    (network,) = document["networks"].values()
    subnet: str = network["ipam"]["config"][0]["subnet"]
    return subnet


@pytest.mark.parametrize("environ", [{}, {"FLEET_SUBNET": "10.77.0.0/24"}])
def test_compose_user_service_trusts_exactly_the_fleet_network(environ: dict[str, str]) -> None:
    document = compose(**environ)
    subnet = fleet_subnet(document)
    assert subnet == environ.get("FLEET_SUBNET", subnet)
    user = document["services"]["user_service"]
    assert "ports" not in user  # only the fleet network reaches it
    assert proxy_list(user["environment"]["TRUSTED_PROXIES"]) == [subnet]
    assert "*" not in user["environment"]["TRUSTED_PROXIES"]


def test_compose_gateway_trusts_no_one_but_a_named_load_balancer() -> None:
    gateway = compose()["services"]["graphql_gateway"]
    assert gateway["ports"]  # the public port
    assert proxy_list(gateway["environment"]["TRUSTED_PROXIES"]) == []
    named = compose(GATEWAY_TRUSTED_PROXIES=LOAD_BALANCER)["services"]["graphql_gateway"]
    assert proxy_list(named["environment"]["TRUSTED_PROXIES"]) == [LOAD_BALANCER]


# Pod networks of common clusters: kubeadm with flannel, k3s, Calico's default.
POD_NETWORKS = ("10.244.0.0/16", "10.42.0.0/16", "192.168.0.0/16")


def test_k8s_user_service_and_gateway_trust_the_pod_network_only() -> None:
    documents = k8s()
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    assert "TRUSTED_PROXIES" not in config  # set per Deployment, not for every service
    for name in ("user-service", "graphql-gateway"):
        proxies = container_env(documents, name)["TRUSTED_PROXIES"]
        assert "*" not in proxies
        for network in POD_NETWORKS:
            assert covers(proxies, network), (name, network)
        assert not covers(proxies, "0.0.0.0/0"), name
        assert not any(n.is_global for n in networks(proxies)), name
    service = next(
        d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "user-service"
    )
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


# --- a real gateway in front of a real user service, configured as compose does -------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def compose_user_service(kafka_broker: str, redis_url: str) -> AsyncIterator[FastAPI]:
    environment = compose()["services"]["user_service"]["environment"]
    settings = service_settings(
        UserSettings,
        kafka_broker,
        service_name=f"user_service_edge_{uuid.uuid4().hex[:8]}",  # its own Redis keys
        redis_url=redis_url,
        login_limit_per_address=f"{LOGIN_PER_ADDRESS}/minute",
        trusted_proxies=environment["TRUSTED_PROXIES"],
    )
    with own_consumer_group(user_main, "edge"):
        async with running_service(user_main.create_app, settings) as running:
            yield running.app


LOGIN = 'mutation($e: String!) { login(email: $e, password: "wrong-password") { token } }'


@pytest.mark.integration
async def test_two_clients_behind_the_gateway_have_separate_login_budgets(
    compose_user_service: FastAPI, redis_url: str, kafka_broker: str
) -> None:
    document = compose(GATEWAY_TRUSTED_PROXIES=LOAD_BALANCER)
    # The gateway's address on the fleet network, as the user service sees it.
    gateway_address = str(next(ipaddress.ip_network(fleet_subnet(document)).hosts()) + 7)
    settings = gateway_settings(
        redis_url,
        kafka_broker,
        trusted_proxies=document["services"]["graphql_gateway"]["environment"]["TRUSTED_PROXIES"],
    )
    async with running_gateway(settings) as running:
        app = running.app
        send_users_to(running, compose_user_service, gateway_address)

        async def codes(peer: str, forwarded_for: str | None, attempts: int) -> list[str]:
            headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
            found = []
            async with asgi_client(app, "gw", client=(peer, 5555)) as client:
                for _ in range(attempts):
                    variables = {"e": unique_email("edge")}
                    response = await client.post(
                        "/graphql", json={"query": LOGIN, "variables": variables}, headers=headers
                    )
                    found.append(response.json()["errors"][0]["extensions"]["code"])
            return found

        first, second = "198.51.100.21", "198.51.100.22"
        # Both behind the load balancer: each is counted as itself.
        assert await codes(LOAD_BALANCER, first, LOGIN_PER_ADDRESS + 1) == [
            "UNAUTHENTICATED"
        ] * LOGIN_PER_ADDRESS + ["RATE_LIMITED"]
        assert await codes(LOAD_BALANCER, second, 1) == ["UNAUTHENTICATED"]
        # A client reaching the gateway directly cannot pick its address with the header.
        direct = "198.51.100.23"
        spoofed = [
            (await codes(direct, f"198.51.100.{100 + n}", 1))[0]
            for n in range(LOGIN_PER_ADDRESS + 1)
        ]
        assert spoofed == ["UNAUTHENTICATED"] * LOGIN_PER_ADDRESS + ["RATE_LIMITED"]


# --- /metrics off the public port, introspection off in production ----------------------------


def test_compose_keeps_metrics_off_the_public_port_and_prometheus_scrapes_them() -> None:
    document = compose()
    gateway = document["services"]["graphql_gateway"]
    metrics_port = int(gateway["environment"]["METRICS_PORT"])
    published = [str(item).rsplit(":", 1)[-1] for item in gateway["ports"]]
    assert published == [gateway["environment"]["PORT"]]
    assert str(metrics_port) not in published
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "graphql_gateway")
    assert [d["port"] for d in job["dns_sd_configs"]] == [metrics_port]


def test_compose_and_k8s_turn_introspection_and_graphiql_off() -> None:
    gateway = compose()["services"]["graphql_gateway"]["environment"]
    assert (gateway["GRAPHQL_INTROSPECTION"], gateway["GRAPHIQL_ENABLED"]) == ("false", "false")
    on_demand = compose(GRAPHQL_INTROSPECTION="true")["services"]["graphql_gateway"]
    assert on_demand["environment"]["GRAPHQL_INTROSPECTION"] == "true"
    env = container_env(k8s(), "graphql-gateway")
    assert (env["GRAPHQL_INTROSPECTION"], env["GRAPHIQL_ENABLED"]) == ("false", "false")


def test_k8s_keeps_metrics_off_the_gateway_service_and_prometheus_scrapes_them() -> None:
    documents = k8s()
    env = container_env(documents, "graphql-gateway")
    deployment = next(
        d
        for d in documents
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "graphql-gateway"
    )
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == env["METRICS_PORT"]
    service = next(
        d
        for d in documents
        if d["kind"] == "Service" and d["metadata"]["name"] == "graphql-gateway"
    )
    exposed = {str(p["targetPort"]) for p in service["spec"]["ports"]}
    exposed |= {str(p["port"]) for p in service["spec"]["ports"]}
    assert env["METRICS_PORT"] not in exposed
    assert "metrics" not in exposed


@pytest.mark.integration
async def test_with_a_metrics_port_the_public_port_serves_no_metrics(
    redis_url: str, kafka_broker: str
) -> None:
    metrics_port = free_port()
    settings = gateway_settings(redis_url, kafka_broker, metrics_port=metrics_port)
    async with running_gateway(settings) as running:
        app = running.app
        async with asgi_client(app, "gw") as public:
            assert (await public.post("/graphql", json={"query": "{ __typename }"})).is_success
            assert (await public.get("/metrics")).status_code == 404
            assert (await public.get("/health")).status_code == 200
        async with httpx.AsyncClient() as scraper:
            scraped = await scraper.get(f"http://{LOOPBACK}:{metrics_port}/metrics")
        assert scraped.status_code == 200
        assert 'http_requests_total{method="POST",route="/graphql",service="graphql_gateway"' in (
            scraped.text
        )
    # Stopped with the app: nothing listens on the port any more (a closed connection may
    # still be in TIME_WAIT, which SO_REUSEADDR allows; a listener it does not).
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((LOOPBACK, metrics_port))


async def test_make_run_keeps_metrics_and_introspection_on_the_gateways_port(
    redis_url: str, kafka_broker: str
) -> None:
    settings = gateway_settings(redis_url, kafka_broker)
    assert (settings.metrics_port, settings.graphql_introspection) == (0, True)
    assert "GRAPHQL_INTROSPECTION" not in environment_of({}) and "METRICS_PORT" not in (
        environment_of({})
    )
    async with running_gateway(settings) as running:
        app = running.app
        async with asgi_client(app, "gw") as client:
            assert (await client.get("/metrics")).status_code == 200
            schema = await client.post(
                "/graphql", json={"query": "{ __schema { queryType { name } } }"}
            )
        assert schema.json()["data"]["__schema"]["queryType"]["name"] == "Query"
