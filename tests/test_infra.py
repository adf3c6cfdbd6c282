"""infra/ read as data: it parses, it is least-privilege, and it wires every setting the app reads.

No Bicep compiler can be installed here, so the files are parsed with pycep; checkov runs in
`make iac` (part of `make test`).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from pycep import BicepParser

INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
# Read by the app only where there is no Azure: never deployed.
LOCAL_ONLY = {"SOURCE_STORAGE_CONNECTION_STRING", "SENDGRID_API_KEY"}
ROLES = {
    "key_vault_secrets_user": "4633458b-17de-408a-b874-0445c86b69e6",
    "storage_blob_data_reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "storage_blob_data_contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
}


@cache
def parsed(name: str) -> dict[str, Any]:
    return BicepParser().parse(text=(INFRA / name).read_text())


def resources(name: str, kind: str) -> list[dict[str, Any]]:
    """Resources of a type, with a conditional resource's body unwrapped."""
    found = [r for r in parsed(name)["resources"].values() if r.get("type") == kind]
    return [{**r, "config": r["config"]["config"]} if "condition" in r["config"] else r for r in found]


def variable(name: str, value: Any) -> Any:
    """A variable's value when `value` names one (pycep leaves references as names)."""
    variables = parsed(name).get("variables", {})
    return variables[value]["value"] if isinstance(value, str) and value in variables else value


def text_of(value: Any) -> str:
    return json.dumps(value, default=str)


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    tree = BicepParser().parse(text=path.read_text())
    assert tree["resources"] or tree.get("modules")


def test_the_parser_refuses_broken_bicep() -> None:
    with pytest.raises(Exception):  # noqa: B017 - any parse error will do; the point is that there is one
        BicepParser().parse(text="resource broken 'Microsoft.Web/sites@2024-04-01' = {\n  name:\n}")


def settings_the_app_reads() -> set[str]:
    source = (ROOT / "shared" / "settings.py").read_text()
    return set(re.findall(r'\(env, "([A-Z][A-Z0-9_]+)"', source))


def deployed_settings() -> set[str]:
    app_module = parsed("main.bicep")["modules"]["app"]["config"]["params"]
    names = set(app_module["appSettings"])
    for entry in parsed("modules/function-app.bicep")["variables"]["hostSettings"]["value"]:
        names.add(entry["name"])
    return names


def test_every_setting_the_app_reads_is_wired_and_no_local_only_one_is() -> None:
    read = settings_the_app_reads()
    assert {"SOURCE_CONTAINER", "KEY_VAULT_URL", "EXPORT_DEFINITIONS", "SOURCE_STORAGE_ACCOUNT_URL"} <= read
    deployed = deployed_settings()
    assert read - LOCAL_ONLY <= deployed, f"not wired: {sorted(read - LOCAL_ONLY - deployed)}"
    assert not LOCAL_ONLY & deployed
    # The host's storage and the app's credential by identity, not by key.
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AZURE_CLIENT_ID"} <= deployed
    assert "AzureWebJobsStorage" not in deployed


def test_role_assignments_are_idempotent_and_narrow() -> None:
    seen: dict[str, str] = {}
    for path in BICEP_FILES:
        name = str(path.relative_to(INFRA))
        for assignment in resources(name, "Microsoft.Authorization/roleAssignments"):
            config = assignment["config"]
            assert text_of(config["name"]).count('"guid"'), f"{name}: role assignment not named with guid()"
            reference = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
            role = str(variable(name, reference))
            scope = config.get("scope")
            assert scope, f"{name}: role assignment without a narrow scope"
            for label, role_id in ROLES.items():
                if role_id in role:
                    seen[label] = f"{name}:{scope}"
    assert seen["key_vault_secrets_user"] == "modules/keyvault.bicep:vault"
    assert seen["storage_blob_data_reader"] == "modules/source-containers.bicep:sourceContainer"
    assert seen["storage_blob_data_contributor"] == "modules/source-containers.bicep:stateContainer"
    everything = "".join(p.read_text() for p in BICEP_FILES)
    assert "8e3af657-a8ff-443c-a75c-2fe8c4bcb635" not in everything  # Owner
    assert "b24988ac-6180-42a3-9c40-3c55c3b4e6fd" not in everything  # Contributor


@pytest.mark.parametrize("name", ["modules/host-storage.bicep", "modules/source-account.bicep"])
def test_storage_accounts_take_no_keys_and_only_tls12(name: str) -> None:
    (account,) = resources(name, "Microsoft.Storage/storageAccounts")
    properties = account["config"]["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True


def test_key_vault_is_rbac_only_with_purge_protection() -> None:
    (vault,) = resources("modules/keyvault.bicep", "Microsoft.KeyVault/vaults")
    properties = vault["config"]["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True and properties["enablePurgeProtection"] is True


def test_function_app_is_flex_consumption_python_311_https_only() -> None:
    (plan,) = resources("modules/function-app.bicep", "Microsoft.Web/serverfarms")
    assert plan["config"]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    (site,) = resources("modules/function-app.bicep", "Microsoft.Web/sites")
    properties = site["config"]["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2" and properties["siteConfig"]["ftpsState"] == "Disabled"
    assert properties["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert properties["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["config"]["identity"]["type"] == "UserAssigned"
    policies = resources("modules/function-app.bicep", "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(p["config"]["name"] for p in policies) == ["ftp", "scm"]
    assert all(p["config"]["properties"]["allow"] is False for p in policies)
    health = json.loads((ROOT / "export_health" / "function.json").read_text())["bindings"][0]
    assert "/api/" + health["route"] == properties["siteConfig"]["healthCheckPath"]


def test_application_insights_takes_no_keys() -> None:
    (insights,) = resources("modules/monitoring.bicep", "Microsoft.Insights/components")
    assert insights["config"]["properties"]["DisableLocalAuth"] is True


def test_outputs_and_parameters_for_azd() -> None:
    outputs = set(parsed("main.bicep")["outputs"])
    assert {"FUNCTION_APP_NAME", "FUNCTION_URL_BASE", "KEY_VAULT_NAME"} <= outputs
    parameters = set(parsed("main.bicep")["parameters"])
    mapped = set(json.loads((INFRA / "main.parameters.json").read_text())["parameters"])
    assert parameters - {"zoneRedundant"} <= mapped
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert re.search(r"host:\s*function", azure_yaml) and re.search(r"language:\s*python", azure_yaml)


def test_checkov_skips_are_few_and_explained() -> None:
    lines = (INFRA / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.match(r"\s*-\s*CKV_", line)]
    assert 0 < len(skips) <= 5
    for index in skips:
        above = lines[index - 1].strip()
        assert above.startswith("#") or re.match(r"-\s*CKV_", above), f"skip on line {index + 1} has no reason"
