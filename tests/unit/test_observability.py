"""The Grafana dashboard and the Prometheus alert rules read only metrics the code exports, parse
as PromQL (promtool), and every alert fires on the series it is about (promtool's rule tests)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fleet.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
# Prometheus's own series about its targets.
PROMETHEUS_SERIES = {"up"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "bool", "offset"}


def exported() -> set[str]:
    """Every series name shared.metrics exports (counters' `_total`, histograms' parts)."""
    names: set[str] = set()
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            for family in collector.describe():
                names.add(family.name)
                suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
                names |= {family.name + s for s in suffixes.get(family.type, [])}
    return names


def series_in(expression: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"[^"]*"', '""', expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    words = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", text)
    return {word for word, call in words if not call and word not in _KEYWORDS}


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    prometheus = yaml.safe_load((DATASOURCES / "prometheus.yml").read_text())["datasources"][0]
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == prometheus["uid"], panel["title"]
        found += [(panel["title"], target["expr"]) for target in panel["targets"]]
    return found


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_parser_finds_the_series_of_an_expression() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (service, le) (rate(a_bucket{x=~"5.."}[5m]))) '
        "/ on (service) b_total > 0 and max without (topic) (c) or label_replace(up == 0, "
        '"service", "$1", "job", "(.*)")'
    )
    assert series_in(expression) == {"a_bucket", "b_total", "c", "up"}


def test_the_dashboard_reads_only_metrics_the_code_exports() -> None:
    known = exported()
    for title, expression in dashboard_expressions():
        unknown = series_in(expression) - known
        assert not unknown, f"{title}: {sorted(unknown)} in {expression}"


def test_the_dashboard_shows_what_operators_need_per_service() -> None:
    shown = set().union(*(series_in(e) for _, e in dashboard_expressions()))
    for needed in (
        "http_requests_total",  # request rate, error rate
        "http_request_duration_seconds_bucket",  # latency percentiles
        "kafka_consumer_lag",  # the admin service's gauges, not kafka-exporter's
        "kafka_dlq_depth",
        "outbox_oldest_pending_age_seconds",
        "outbox_pending_documents",
        "mail_deliveries_total",
    ):
        assert needed in shown, needed
    text = "\n".join(e for _, e in dashboard_expressions())
    for outcome in ("sent", "failed"):
        assert f'mail_deliveries_total{{outcome="{outcome}"}}' in text
    assert "sum by (outcome) (rate(mail_deliveries_total" in text  # sent/retrying/failed
    assert "kafka_consumergroup_lag" not in text


def test_the_alert_rules_read_only_metrics_the_code_exports() -> None:
    known = exported() | PROMETHEUS_SERIES
    for rule in alert_rules():
        unknown = series_in(rule["expr"]) - known
        assert not unknown, f"{rule['alert']}: {sorted(unknown)}"


def test_the_issue_s_alerts_exist_each_with_a_runbook() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == {
        "DeadLettersWaiting",
        "ConsumerLagGrowing",
        "OutboxStale",
        "HighErrorRate",
        "ServiceNotReady",
        "MailFailing",
    }
    runbook = (DEPLOY.parent / "docs" / "operations.md").read_text().lower()
    for name, rule in rules.items():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"### {name.lower()}" in runbook, anchor


def test_every_alert_has_a_rule_test_that_fires_it() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    mounted = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounted


def promtool() -> str:
    """promtool (Debian's `prometheus` package; `make promtool` installs it)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make test` installs it (make promtool)")
        pytest.skip("promtool is not installed (make promtool)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - promtool on our own files
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rules_and_every_rule_test_passes() -> None:
    checked = run("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    rules = [
        {
            "record": f"dashboard:panel_{index}",
            "expr": expression.replace("$__rate_interval", "5m").replace("$__range", "1h"),
        }
        for index, (_, expression) in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_sends_traces_to_jaeger_and_grafana_can_read_them() -> None:
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "jaeger" in services
    for name, service in services.items():
        if "build" in service:
            environment = service["environment"]
            assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith("http://jaeger:4318}"), name
            assert "OTEL_TRACES_SAMPLER" in environment and "OTEL_TRACES_SAMPLER_ARG" in environment
    jaeger = yaml.safe_load((DATASOURCES / "jaeger.yml").read_text())["datasources"][0]
    assert jaeger["type"] == "jaeger" and jaeger["url"] == "http://jaeger:16686"
