"""The retention purge's CronJob: on by default, one run at a time, the workers' retention
settings, PostgreSQL its only peer."""

from __future__ import annotations

from typing import Any

from tests.chart.rendering import FULLNAME, Render, by_kind, env_of, one

CRONJOB = f"{FULLNAME}-purge"


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cron = one(docs, "CronJob", CRONJOB)
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def _values(container: dict) -> dict[str, str]:
    return {k: e["value"] for k, e in env_of(container).items() if "value" in e}


def _worker_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    worker = one(docs, "Deployment", f"{FULLNAME}-worker")["spec"]["template"]["spec"]
    return _values(worker["containers"][0])


def test_the_purge_runs_daily_by_default_one_run_at_a_time(render: Render) -> None:
    docs = render("defaults")
    cron = one(docs, "CronJob", CRONJOB)["spec"]
    assert cron["schedule"] == "17 3 * * *" and cron["timeZone"] == "Asia/Ho_Chi_Minh"
    assert cron["concurrencyPolicy"] == "Forbid"
    job = cron["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 3600 and job["template"]["spec"]["restartPolicy"] == (
        "Never"
    )
    container = _container(docs)
    assert container["command"] == ["conversation-events-admin", "purge"]
    assert container["image"].startswith("conversation-events:")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    env = _values(container)
    assert env["CE_PURGE_BATCH_SIZE"] == "1000" and env["CE_ENVIRONMENT"] == "production"


def test_the_purge_and_the_workers_read_the_same_retention(render: Render) -> None:
    for args, content, events in (
        ((), "30", "400"),
        (("--set=retention.contentDays=0", "--set=retention.eventDays=90"), "0", "90"),
    ):
        docs = render(None, *args)
        for env in (_values(_container(docs)), _worker_env(docs)):
            assert (env["CE_RETENTION_CONTENT_DAYS"], env["CE_RETENTION_EVENT_DAYS"]) == (
                content,
                events,
            )


def test_the_purge_reaches_postgresql_and_dns_only(render: Render) -> None:
    policy = one(render("defaults"), "NetworkPolicy", CRONJOB)["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "purge"
    assert "ingress" not in policy  # nothing reaches it
    database, dns = policy["egress"]
    [peer] = database["to"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "postgresql"
    assert database["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert "to" not in dns and {p["port"] for p in dns["ports"]} == {53}
    # An external database: its port, wherever it is; its CA mounted, nothing of RabbitMQ's.
    docs = render("external-services")
    database, _ = one(docs, "NetworkPolicy", CRONJOB)["spec"]["egress"]
    assert database == {"ports": [{"port": 5432, "protocol": "TCP"}]}
    mounts = {m["mountPath"] for m in _container(docs)["volumeMounts"]}
    assert mounts == {"/tmp", "/etc/conversation-events/postgresql-ca"}


def test_the_purge_can_be_left_to_something_else(render: Render) -> None:
    docs = render(None, "--set=retention.purge.enabled=false")
    assert not [d for d in docs if d["metadata"]["name"] == CRONJOB]
    assert _worker_env(docs)["CE_RETENTION_CONTENT_DAYS"] == "30"
    assert by_kind(docs, "NetworkPolicy")
