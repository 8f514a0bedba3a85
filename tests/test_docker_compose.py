"""docker-compose.yml is valid and wires the services as the README says (the images cannot be
pulled here, so nothing is started): the compose tool resolves it, and the gateway's config that
its one-shot renders is for OpenResty and reaches the control plane and Redis by service name."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from click.testing import CliRunner

from control_plane.cli.main import main
from control_plane.settings import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor docker compose is installed (make test installs docker-compose)")


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = subprocess.run([*compose_command(), "-f", str(COMPOSE_FILE), "config"], capture_output=True,
                            text=True, check=False, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_every_service_is_there_with_health_checks_and_data_volumes(resolved):
    services = resolved["services"]
    assert set(services) == {"redis", "postgres", "control", "worker", "gateway-config", "gateway"}
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["gateway"]["image"].startswith("openresty/openresty:")
    for name in ("redis", "postgres", "control", "gateway"):
        assert services[name]["healthcheck"]["test"], name
    assert {"state", "redis-data", "postgres-data"} <= set(resolved["volumes"])
    assert services["control"]["command"] == ["tollgate", "up", "--role", "control"]
    assert services["worker"]["command"] == ["tollgate", "worker"]
    for name in ("control", "worker", "gateway-config"):
        assert services[name]["build"]["context"] == str(REPO_ROOT)
    assert "make install" in (REPO_ROOT / "Dockerfile").read_text()


def mounts(service: dict) -> dict[str, str]:
    """{target: source} of a service's volumes, in the short form (docker-compose 1) or the long
    one (docker compose 2)."""
    found = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[target] = source
    return found


def test_the_gateway_mounts_the_hot_path_and_the_rendered_config(resolved):
    gateway = resolved["services"]["gateway"]
    mounts_of_gateway = mounts(gateway)
    assert mounts_of_gateway["/var/lib/tollgate"] == "state"
    for part in ("lua", "proxy", "errors.json", "control_plane/static"):
        assert mounts_of_gateway[f"/opt/tollgate/{part}"] == str(REPO_ROOT / part)
    assert gateway["depends_on"]["gateway-config"]["condition"] == "service_completed_successfully"
    assert gateway["depends_on"]["control"]["condition"] == "service_healthy"
    assert int(gateway["ports"][0]["target"]) == 8080


def test_the_rendered_openresty_config_reaches_the_services_by_name(resolved, tmp_path):
    environment = {name: str(value) for name, value in resolved["services"]["gateway-config"]["environment"].items()}
    environment["TOLLGATE_HOME"] = str(tmp_path)  # the container's /var/lib/tollgate
    run = CliRunner().invoke(main, ["nginx-config", "--openresty"], env=environment)
    assert run.exit_code == 0, run.output
    conf = (tmp_path / "nginx" / "nginx.conf").read_text()
    assert "load_module" not in conf  # OpenResty has Lua built in
    assert "server control:8000;" in conf
    assert "listen 0.0.0.0:8080" in conf
    hot = (tmp_path / "nginx" / "tollgate.json").read_text()
    assert '"host": "redis"' in hot and '"port": 6379' in hot
