"""The deployment files in ``images/*/deploy``, each proved by its real validator.

- Task definitions and Express Mode service definitions: botocore's own ECS service
  model (the input shapes of ``RegisterTaskDefinition`` and
  ``CreateExpressGatewayService``, which ``aws ecs ... --cli-input-json`` sends),
  checked with botocore's ``ParamValidator``; then what the model cannot say: an init
  process in front of cloudboot, secrets by ARN, the Express rules for a task
  definition, and that the variables they inject are what the image's cloudboot reads
  (``cloudboot render --dry-run`` with the image's cloudboot.toml).
- CloudFormation templates: ``cfn-lint``, no finding at all; then the same facts on the
  template's task definition, and the resources around the app.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest
from botocore.validate import ParamValidator
from cfnlint.decode import decode

from bootproc import run as cloudboot
from imagerun import IMAGES, REPO
from readers import describe, log_events, wordpress_sample
from servers import SECRET_PASSWORD
from test_image_wordpress import HEALTH_CHECK_PATH

IMAGE_NAMES = ("phoenix", "wordpress")
PORTS = {"phoenix": 4000, "wordpress": 80}
HEALTH_CHECKS = {"phoenix": "/", "wordpress": HEALTH_CHECK_PATH}
"""The paths the image tests wait on: 200 from the first boot on."""
SOURCES = {"phoenix": "DB_SECRET", "wordpress": "WORDPRESS_DB_*"}
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
EXPRESS_WITH_TASK_DEFINITION_FORBIDS = (
    "primaryContainer",
    "executionRoleArn",
    "taskRoleArn",
    "cpu",
    "memory",
    "cpuArchitecture",
)
"""botocore's documentation of ``taskDefinitionArn``: none of these beside it."""
SECRETS_MANAGER_ARN = re.compile(
    r"^arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+-[A-Za-z0-9]{6}"
    r"(?::(?P<key>[A-Za-z0-9_]+)::)?$"
)
"""A secret's full ARN, optionally ``:json-key:version-stage:version-id`` with the
stage and id left empty (the current version)."""
SSM_ARN = re.compile(r"^arn:aws:ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9/_.-]+$")


def ecs_model() -> Any:
    return botocore.session.get_session().get_service_model("ecs")


def validate(operation: str, params: dict[str, Any]) -> None:
    shape = ecs_model().operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def load_json(image: str, name: str) -> dict[str, Any]:
    data = json.loads((IMAGES / image / "deploy" / name).read_text())
    assert isinstance(data, dict)
    return data


def pinned(package: str) -> str:
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for requirement in dev["dev"]:
        name, _, version = str(requirement).partition("==")
        if name == package:
            return version.split(";")[0].strip()
    raise AssertionError(f"{package} is not pinned with == in the dev extras")


def test_the_pinned_botocore_knows_express_mode() -> None:
    assert botocore.__version__ == pinned("botocore")
    operations = ecs_model().operation_names
    assert {"RegisterTaskDefinition", "CreateExpressGatewayService"} <= set(operations)
    # The model's own words for what an Express service needs.
    create = ecs_model().operation_model("CreateExpressGatewayService").input_shape
    assert "infrastructureRoleArn" in create.required_members
    assert create.members["primaryContainer"].required_members == ["image"]


def check_secrets(secrets: list[dict[str, str]]) -> set[str]:
    """Every secret is injected by ARN; the kinds found (``sm``, ``sm-key``, ``ssm``)."""
    kinds: set[str] = set()
    for secret in secrets:
        value = secret["valueFrom"]
        match = SECRETS_MANAGER_ARN.match(value)
        if match:
            kinds.add("sm-key" if match["key"] else "sm")
        else:
            assert SSM_ARN.match(value), f"{secret['name']}: {value} is not an ARN"
            kinds.add("ssm")
    return kinds


@pytest.mark.parametrize("image", IMAGE_NAMES)
def test_the_task_definition_is_valid_and_runs_an_init_in_front(image: str) -> None:
    task = load_json(image, "ecs-task-definition.json")
    validate("RegisterTaskDefinition", task)
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    # The Express rules for taskDefinitionArn, so one task definition serves both paths.
    [container] = task["containerDefinitions"]
    assert container["name"] == "Main"
    [port] = container["portMappings"]
    assert (port["containerPort"], port["protocol"], bool(port["name"])) == (
        PORTS[image],
        "tcp",
        True,
    )
    assert container["linuxParameters"]["initProcessEnabled"] is True
    assert container["stopTimeout"] <= 120
    kinds = check_secrets(container["secrets"])
    assert "ssm" in kinds
    assert kinds & {"sm", "sm-key"}
    if image == "wordpress":
        assert "sm-key" in kinds
        mounts = {mount["containerPath"] for mount in container["mountPoints"]}
        assert mounts == {"/var/www/html"}


@pytest.mark.parametrize("image", IMAGE_NAMES)
def test_the_express_service_definitions_are_valid(image: str) -> None:
    primary = load_json(image, "express-service.json")
    validate("CreateExpressGatewayService", primary)
    # "only a container image, task execution role and infrastructure role".
    assert primary["primaryContainer"]["image"]
    assert primary["executionRoleArn"].startswith("arn:aws:iam::")
    assert primary["infrastructureRoleArn"].startswith("arn:aws:iam::")
    assert primary["primaryContainer"]["containerPort"] == PORTS[image]
    assert primary["healthCheckPath"] == HEALTH_CHECKS[image]
    task = load_json(image, "ecs-task-definition.json")["containerDefinitions"][0]
    assert primary["primaryContainer"]["secrets"] == task["secrets"]
    assert primary["primaryContainer"]["environment"] == task["environment"]

    with_task = load_json(image, "express-service-with-task-definition.json")
    validate("CreateExpressGatewayService", with_task)
    assert with_task["taskDefinitionArn"].startswith("arn:aws:ecs:")
    assert not set(EXPRESS_WITH_TASK_DEFINITION_FORBIDS) & set(with_task)
    assert with_task["healthCheckPath"] == HEALTH_CHECKS[image]


def stand_in_value(name: str, value_from: str) -> str:
    """What ECS would put in the variable: the secret's JSON key, the parameter, or
    the whole secret (the RDS layout)."""
    key = SECRETS_MANAGER_ARN.match(value_from)
    if key and key["key"]:
        return {"username": "app_user", "password": SECRET_PASSWORD}[key["key"]]
    if key:
        host = "app.cluster-abcdefghijkl.us-west-2.rds.amazonaws.com"
        layout = {"engine": "postgres", "host": host, "port": 5432, "dbname": "app"}
        login = {"username": "app_user", "password": SECRET_PASSWORD}
        return json.dumps({**layout, **login, "dbClusterIdentifier": "app"})
    parameter = value_from.rsplit("/", 1)[1]
    return {
        "db_host": "wordpress.cluster-abcdefghijkl.us-west-2.rds.amazonaws.com:3306",
        "secret_key_base": "k" * 64,
    }[parameter]


def injected(container: dict[str, Any]) -> dict[str, str]:
    env = {item["name"]: item["value"] for item in container["environment"]}
    for secret in container["secrets"]:
        env[secret["name"]] = stand_in_value(secret["name"], secret["valueFrom"])
    return env


@pytest.mark.parametrize("image", IMAGE_NAMES)
def test_the_injected_variables_are_what_the_images_cloudboot_reads(
    image: str, tmp_path: Path, home: Path
) -> None:
    container = load_json(image, "ecs-task-definition.json")["containerDefinitions"][0]
    env = {
        **injected(container),
        "CLOUDBOOT_CONFIG": str(IMAGES / image / "cloudboot.toml"),
        "CLOUDBOOT_LOG_FORMAT": "json",
    }
    if image == "wordpress":
        env["CLOUDBOOT_WP_CONFIG"] = str(tmp_path / "wp-config.php")
        env["CLOUDBOOT_WP_CONFIG_SAMPLE"] = str(wordpress_sample())
    else:
        # The image copies the repository's RDS bundle to this path; map it here.
        env["CLOUDBOOT_CA_FILE"] = str(IMAGES / "rds-global-bundle.pem")
        env["CLOUDBOOT_PGPASS"] = str(tmp_path / ".pgpass")
        env["CLOUDBOOT_PG_SERVICE_FILE"] = str(tmp_path / ".pg_service.conf")
    result = cloudboot(["render", "--dry-run", "--json"], env, home=home)
    assert result.returncode == 0, describe(result)
    found = [e for e in log_events(result.stderr) if e["event"] == "cloudboot.sources.found"]
    assert [event["source"] for event in found] == [SOURCES[image]]
    assert list(tmp_path.iterdir()) == []


def cfn_templates() -> Iterator[Path]:
    yield from sorted(IMAGES.glob("*/deploy/cloudformation.yaml"))


@pytest.mark.parametrize("template", list(cfn_templates()), ids=lambda p: p.parts[-3])
def test_cfn_lint_finds_nothing(template: Path, tmp_path: Path) -> None:
    assert CFN_LINT.is_file(), f"{CFN_LINT} is missing: pip install cfn-lint"
    assert pinned("cfn-lint")
    result = subprocess.run(
        [str(CFN_LINT), "--format", "json", str(template)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no .cfnlintrc can lower a rule
        timeout=120,
        check=False,
    )
    assert json.loads(result.stdout or "null") == [], result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


@pytest.mark.parametrize("image", IMAGE_NAMES)
def test_the_template_builds_what_the_app_needs(image: str) -> None:
    template, problems = decode(str(IMAGES / image / "deploy" / "cloudformation.yaml"))
    assert not problems, problems
    [cluster_name] = resources(template, "AWS::RDS::DBCluster")
    cluster = resources(template, "AWS::RDS::DBCluster")[cluster_name]
    assert cluster["ServerlessV2ScalingConfiguration"]["MinCapacity"] == 0
    assert cluster["StorageEncrypted"] is True
    [instance] = resources(template, "AWS::RDS::DBInstance").values()
    assert instance["DBInstanceClass"] == "db.serverless"
    [task] = resources(template, "AWS::ECS::TaskDefinition").values()
    [container] = task["ContainerDefinitions"]
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    assert container["Name"] == "Main"
    [port] = container["PortMappings"]
    assert port["ContainerPort"] == PORTS[image]

    # The same variables as the task definition JSON, wherever each value comes from.
    names = {item["Name"] for item in container["Environment"] + container["Secrets"]}
    json_container = load_json(image, "ecs-task-definition.json")["containerDefinitions"][0]
    assert names == {
        item["name"] for item in json_container["environment"] + json_container["secrets"]
    }

    # The database takes connections from the tasks' security group only, on its port.
    db_port = 3306 if image == "wordpress" else 5432
    [db_group] = cluster["VpcSecurityGroupIds"]
    rules = [
        rule
        for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if rule["GroupId"] == db_group
    ]
    assert len(rules) == 1
    assert (rules[0]["FromPort"], rules[0]["ToPort"]) == (db_port, db_port)
    assert rules[0]["SourceSecurityGroupId"] == {"Ref": "TaskSecurityGroup"}

    secrets = {item["Name"]: item["ValueFrom"] for item in container["Secrets"]}
    if image == "wordpress":
        assert cluster["ManageMasterUserPassword"] is True
        master = "${" + cluster_name + ".MasterUserSecret.SecretArn}"
        assert secrets["WORDPRESS_DB_USER"] == {"Fn::Sub": master + ":username::"}
        assert secrets["WORDPRESS_DB_PASSWORD"] == {"Fn::Sub": master + ":password::"}
        [service] = resources(template, "AWS::ECS::ExpressGatewayService").values()
        assert service["TaskDefinitionArn"] == {"Ref": "TaskDefinition"}
        assert service["HealthCheckPath"] == HEALTH_CHECKS[image]
    else:
        [attachment_name] = resources(template, "AWS::SecretsManager::SecretTargetAttachment")
        assert secrets["DB_SECRET"] == {"Ref": attachment_name}
        [secret] = resources(template, "AWS::SecretsManager::Secret").values()
        layout = secret["GenerateSecretString"]["SecretStringTemplate"]["Fn::Sub"]
        assert set(json.loads(layout.replace("${DatabaseName}", "app"))) == {
            "username",
            "dbname",
        }
        [service] = resources(template, "AWS::ECS::Service").values()
        assert service["LaunchType"] == "FARGATE"
