"""docker-compose.yml, checked statically (no Docker here): services, healthchecks, pinned
images, loopback ports, named volumes, and that every referenced local file exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_services_and_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "kafka", "kafka-init", "clickhouse", "migrate", "clickhouse-grants", "worker",
        "alerter", "simulator", "prometheus", "grafana", "grafana-init",
    }
    one_shot = {"migrate", "kafka-init", "clickhouse-grants", "grafana-init"}
    for name, svc in services.items():
        if name not in one_shot | {"simulator"}:  # one-shot and client-only
            assert svc["healthcheck"]["test"], name
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["migrate"]["command"] == ["db", "migrate"]
    for name in one_shot:
        assert services[name]["restart"] == "no", name
    start = (ROOT / "deploy/kafka/start.sh").read_text()
    assert "process.roles=broker,controller" in start  # KRaft, single node
    assert "grafana-clickhouse-datasource" in services["grafana"]["environment"][
        "GF_INSTALL_PLUGINS"
    ]


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image or svc.get("build"), name
        if image:
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest" and "/" not in tag, (name, image)
            assert re.search(r"\d", tag), (name, image)


def test_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    published = 0
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
            published += 1
    assert published >= 5


def test_volumes_are_named_and_local_files_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get(
                "dockerfile", "Dockerfile"
            )
            assert (context / dockerfile).is_file(), name
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)
                used.add(source)
    assert used == declared
    assert {"kafka-data", "clickhouse-data", "prometheus-data", "grafana-data"} <= declared


def test_dockerfile_copies_existing_paths() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+:\d[\w.-]*", text, re.M), "base image not pinned"
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.M)
    for line in text.splitlines():
        if line.startswith("COPY --from="):  # from an earlier stage of this file
            assert line.split()[1].removeprefix("--from=") in stages, line
        elif line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
    # the compiled page-view lane is built (setup.py) where the compiler is installed
    build = text.split("\nFROM ")[1]  # the first stage
    assert "setup.py" in build and "gcc" in build and "pip wheel" in build
    # migrations are read from the source tree, which the image keeps in /app
    assert "C2M_MIGRATIONS_DIR=/app/deploy/clickhouse" in text


def test_wiring_between_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker_env = services["worker"]["environment"]
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "c2m-worker")
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["port"] == int(worker_env["C2M_METRICS_PORT"])
    assert worker_env["C2M_KAFKA_BOOTSTRAP"] == "kafka:9092"
    # the alert rules run exactly once: in the alerter, which consumes nothing
    alerter_env = services["alerter"]["environment"]
    assert worker_env["C2M_ALERTS_ENABLED"] == "false"
    assert alerter_env["C2M_INGEST_ENABLED"] == "false"
    assert alerter_env.get("C2M_ALERTS_ENABLED", "true") != "false"
    alerter_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "c2m-alerter")
    assert alerter_job["static_configs"][0]["targets"] == [
        f"alerter:{alerter_env['C2M_METRICS_PORT']}"
    ]
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yml").read_text()
    )["datasources"]
    ch = next(d for d in datasources if d["type"] == "grafana-clickhouse-datasource")
    assert ch["jsonData"]["host"] == "clickhouse"
    assert worker_env["C2M_CLICKHOUSE_URL"] == f"http://clickhouse:{ch['jsonData']['port']}"
    grafana_env = services["grafana"]["environment"]
    assert {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"} <= set(grafana_env)
    home = grafana_env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy/grafana/dashboards" / Path(home).name).is_file()
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus) missing; .ci/run installs it"
    check = subprocess.run([promtool, "check", "config", "--syntax-only",
                            str(ROOT / "deploy/prometheus/prometheus.yml")],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr



def test_prometheus_alert_rules_are_mounted_checked_and_unit_tested(
    compose: dict[str, Any],
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus) missing; .ci/run installs it"
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["rules.yml"]
    # the container sees the rules next to its config
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in volumes
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["services"]["prometheus"][
        "command"]
    # full check: the config and the rule files it names
    check = subprocess.run([promtool, "check", "config",
                            str(ROOT / "deploy/prometheus/prometheus.yml")],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "9 rules found" in check.stdout + check.stderr
    # every alert fires on its scenario and stays quiet on its look-alike
    test = subprocess.run([promtool, "test", "rules", "rules_test.yml"],
                          cwd=ROOT / "tests/unit/prometheus",
                          capture_output=True, text=True, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tested = (ROOT / "tests/unit/prometheus/rules_test.yml").read_text()
    assert all(f"alertname: {n}" in tested for n in names), names
    # and every c2m metric a rule reads is one the workers export
    from prometheus_client import REGISTRY

    import streams.metrics  # noqa: F401 - registers the metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",), "info": ("_info",)}
    exported = {fam.name + sfx for fam in REGISTRY.collect() for sfx in suffixes[fam.type]}
    used = set(re.findall(r"c2m_[a-z_]+", "\n".join(
        r["expr"] for g in rules["groups"] for r in g["rules"])))
    assert used and used <= exported, used - exported


def test_kafka_has_sasl_and_acls_for_every_tenant(compose: dict[str, Any]) -> None:
    """Issue 22: SASL/SCRAM on every listener, nothing allowed without an ACL, and the ACLs
    of kafka-init are the plan of streams/kafka/acls.py: workers read shop topics and write
    factory topics, shops only write theirs, a factory reads only its own prefix and its
    own consumer groups."""
    import shlex

    from streams.core import tenancy
    from streams.kafka.acls import factory_user
    from streams.settings import Settings

    services = compose["services"]
    start = (ROOT / "deploy/kafka/start.sh").read_text()
    listeners = re.search(r"^listener.security.protocol.map=(.*)$", start, re.M)
    assert listeners and all(
        p.split(":")[1] == "SASL_PLAINTEXT" for p in listeners.group(1).split(","))
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in start
    assert "allow.everyone.if.no.acl.found=false" in start
    assert re.search(r"^super.users=User:admin;User:controller$", start, re.M)
    assert "--add-scram" in start and "sasl.enabled.mechanisms=SCRAM-SHA-512" in start
    kafka = services["kafka"]
    assert kafka["entrypoint"] == ["/bin/bash", "/deploy/kafka/start.sh"]
    assert "--command-config /tmp/admin.properties" in kafka["healthcheck"]["test"][1]
    for script in ("start.sh", "init.sh"):
        check = subprocess.run(["bash", "-n", str(ROOT / "deploy/kafka" / script)],
                               capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
    gen = subprocess.run([sys.executable, str(ROOT / "deploy/kafka/generate.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert gen.returncode == 0, gen.stdout + gen.stderr

    # the ACLs, as kafka-acls.sh will add them
    init = (ROOT / "deploy/kafka/init.sh").read_text()
    acls = []
    for line in init.splitlines():
        if line.startswith("kafka-acls.sh"):
            args = shlex.split(line)
            ops = {args[i + 1] for i, a in enumerate(args) if a == "--operation"}
            kind = "topic" if "--topic" in args else "group" if "--group" in args else "cluster"
            name = args[args.index(f"--{kind}") + 1] if kind != "cluster" else ""
            assert "--resource-pattern-type" in args and "prefixed" in args, line
            acls.append((args[args.index("--allow-principal") + 1], kind, name, ops))
    assert all(p != "User:*" and n not in ("*", "") for p, _, n, _ in acls)
    by_user: dict[str, list[tuple[str, str, set[str]]]] = {}
    for principal, kind, name, ops in acls:
        by_user.setdefault(principal, []).append((kind, name, ops))
    worker = by_user["User:c2m-worker"]
    assert ("topic", "shop.", {"Read", "Describe"}) in worker
    assert any(k == "topic" and n == "factory." and "Write" in o and "Read" not in o
               for k, n, o in worker)
    assert by_user["User:c2m-shops"] == [("topic", "shop.", {"Write", "Describe"})]
    factories = [u.removeprefix("User:factory-") for u in by_user if u.startswith(
        "User:factory-")]
    assert factories == ["F001", "F002"]
    for f in factories:
        assert by_user[f"User:{factory_user(f)}"] == [
            ("topic", tenancy.prefix(f), {"Read", "Describe"}),
            ("group", tenancy.prefix(f), {"Read", "Describe"}),
        ]
        other = next(o for o in factories if o != f)
        assert not tenancy.restock_topic(other).startswith(tenancy.prefix(f))
    # every password the scripts need is given to them, and no default is shared
    init_env = services["kafka-init"]["environment"]
    needed = set(re.findall(r'"\$\{(\w+):\?\}"', init))
    assert needed <= set(init_env), needed - set(init_env)
    defaults = [str(v) for k, v in init_env.items() if "PASSWORD" in k]
    assert len(set(defaults)) == len(defaults)
    # clients: SASL with SCRAM, the worker's user for workers, the shops' for the simulator
    env = compose["x-c2m-env"]
    assert env["C2M_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["C2M_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["C2M_KAFKA_SASL_USERNAME"] == "c2m-worker"
    assert services["simulator"]["environment"]["C2M_KAFKA_SASL_USERNAME"] == "c2m-shops"
    Settings(kafka_security_protocol=env["C2M_KAFKA_SECURITY_PROTOCOL"],
             kafka_sasl_mechanism=env["C2M_KAFKA_SASL_MECHANISM"])
    for name in ("worker", "alerter", "simulator"):
        assert services[name]["depends_on"]["kafka-init"]["condition"] == (
            "service_completed_successfully"), name


def test_factories_get_clickhouse_users_grafana_orgs_and_tokens(compose: dict[str, Any]) -> None:
    """Issue 22: a read-only ClickHouse user per factory of the stack, used by its own
    Grafana organisation; the web servers (bound beyond loopback) require tokens."""
    from streams.settings import Settings

    services = compose["services"]
    grants = " ".join(services["clickhouse-grants"]["command"])
    ginit = services["grafana-init"]
    factories = ginit["environment"]["C2M_FACTORIES"].split(",")
    assert factories == ["F001", "F002"]
    for f in factories:
        assert f"c2m db grant --factory {f} --password-env CLICKHOUSE_PASSWORD_{f}" in grants
        # the same password for the ClickHouse user and the Grafana data source
        assert (services["clickhouse-grants"]["environment"][f"CLICKHOUSE_PASSWORD_{f}"]
                == ginit["environment"][f"CLICKHOUSE_PASSWORD_{f}"])
        assert ginit["environment"][f"GRAFANA_PASSWORD_{f}"]
    assert ginit["entrypoint"] == ["python", "/grafana/factory_orgs.py"]
    assert "./deploy/grafana:/grafana:ro" in ginit["volumes"]
    assert (ROOT / "deploy/grafana/factory_orgs.py").is_file()
    assert ginit["depends_on"]["clickhouse-grants"]["condition"] == (
        "service_completed_successfully")
    assert services["clickhouse-grants"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully")
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_USERS_AUTO_ASSIGN_ORG"] == "false"
    for name in ("worker", "alerter"):
        env = services[name]["environment"]
        assert Settings(web_host=env["C2M_WEB_HOST"]).tokens_required, name
        assert env["C2M_WEB_TOKENS_FILE"].startswith("/data/tokens/")
        assert "c2m-tokens:/data/tokens" in services[name]["volumes"]
    assert "mkdir -p /data/tokens" in (ROOT / "Dockerfile").read_text()
