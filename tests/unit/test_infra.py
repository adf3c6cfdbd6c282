"""infra/ read as data: it parses, it is least-privilege, it keeps state where only the app
writes, it forgets rejects on time, and it wires every setting the app reads.

No Bicep compiler can be installed here, so the files are parsed with pycep; checkov runs in
`make iac` (part of `make test`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from bicep import BICEP_FILES, INFRA, lifecycle_rules, parsed, resources, text_of, variable
from helpers import ROOT
from pycep import BicepParser

from shared import settings as app_settings
from shared import telemetry

# Used only while shared.settings has no SETTINGS table: read by the app only where there is no
# Azure, so never deployed.
FALLBACK_LOCAL_ONLY = {"SOURCE_STORAGE_CONNECTION_STRING", "STATE_STORAGE_CONNECTION_STRING", "SENDGRID_API_KEY"}
# Settings whose app default is wrong in Azure, so infra must set them even though the app
# starts without them: without STATE_STORAGE_ACCOUNT_URL the state would go to the source
# account, where the app may only read.
MUST_BE_DEPLOYED = {"STATE_STORAGE_ACCOUNT_URL"}
# The Functions host's own settings, not the app's.
HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
ROLES = {
    "key_vault_secrets_user": "4633458b-17de-408a-b874-0445c86b69e6",
    "storage_blob_data_reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "storage_blob_data_contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "storage_blob_data_owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storage_queue_data_contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storage_queue_data_message_sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
}


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    tree = BicepParser().parse(text=path.read_text())
    assert tree["resources"] or tree.get("modules")


def test_the_parser_refuses_broken_bicep() -> None:
    with pytest.raises(Exception):  # noqa: B017 - any parse error will do; the point is that there is one
        BicepParser().parse(text="resource broken 'Microsoft.Web/sites@2024-04-01' = {\n  name:\n}")


def settings_the_app_reads() -> dict[str, bool]:
    """Every setting the app reads -> whether it is local-only, from `shared.settings.SETTINGS`.

    Fallback while that table does not exist yet: the names `load_settings` passes to its
    readers, and the local-only ones listed above."""
    table = getattr(app_settings, "SETTINGS", None)
    if table is not None:
        return {name: bool(info.local_only) for name, info in table.items()}
    source = Path(app_settings.__file__).read_text()
    names = set(re.findall(r'\(env, "([A-Z][A-Z0-9_]+)"', source))
    return {name: name in FALLBACK_LOCAL_ONLY for name in names}


def app_settings_in_bicep() -> dict[str, Any]:
    return dict(parsed("main.bicep")["modules"]["app"]["config"]["params"]["appSettings"])


def deployed_settings() -> set[str]:
    names = set(app_settings_in_bicep())
    for entry in parsed("modules/function-app.bicep")["variables"]["hostSettings"]["value"]:
        names.add(entry["name"])
    return names


def sample_value(value: Any) -> str:
    """A value like the one Azure will hold: a parameter's default, a literal, or (for a module
    output, which is an endpoint in every case here) a placeholder https URL."""
    if isinstance(value, dict):
        return "https://placeholder.example.net/"
    parameters = parsed("main.bicep")["parameters"]
    if value in parameters:
        return str(parameters[value]["default"])
    return str(value)


def test_every_setting_the_app_reads_is_wired_and_no_local_only_one_is() -> None:
    read = settings_the_app_reads()
    assert {"SOURCE_CONTAINER", "KEY_VAULT_URL", "EXPORT_DEFINITIONS", "SOURCE_STORAGE_ACCOUNT_URL"} <= set(read)
    local_only = {name for name, is_local in read.items() if is_local}
    deployed = deployed_settings()
    assert not local_only & deployed, f"local-only settings deployed: {sorted(local_only & deployed)}"
    # Nothing deployed that the app does not read (a misspelt name is silently ignored).
    assert set(app_settings_in_bicep()) <= set(read), sorted(set(app_settings_in_bicep()) - set(read))
    assert deployed - set(app_settings_in_bicep()) == HOST_SETTINGS
    # What infra sets is enough for the app to start: every setting without a default is there...
    env = {name: sample_value(value) for name, value in app_settings_in_bicep().items()}
    app_settings.load_settings(env)
    # ...and so is every setting whose default would be wrong in Azure.
    assert MUST_BE_DEPLOYED <= deployed
    # The host's storage and the app's credential by identity, not by key.
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AZURE_CLIENT_ID"} <= deployed
    assert "AzureWebJobsStorage" not in deployed


def test_the_app_cannot_start_on_what_infra_sets_minus_a_required_setting() -> None:
    """The check above is not vacuous: dropping a required setting makes load_settings refuse."""
    env = {name: sample_value(value) for name, value in app_settings_in_bicep().items()}
    # EXPORT_DEFINITIONS is not required: without it the app reads exports.json (an absent file: no exports).
    for required in ("SOURCE_CONTAINER", "KEY_VAULT_URL"):
        with pytest.raises(app_settings.SettingsError, match=required):
            app_settings.load_settings({k: v for k, v in env.items() if k != required})


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
    assert seen["storage_blob_data_reader"] == "modules/source-container.bicep:sourceContainer"
    assert seen["storage_blob_data_contributor"] == "modules/state-storage.bicep:stateContainer"
    everything = "".join(p.read_text() for p in BICEP_FILES)
    assert "8e3af657-a8ff-443c-a75c-2fe8c4bcb635" not in everything  # Owner
    assert "b24988ac-6180-42a3-9c40-3c55c3b4e6fd" not in everything  # Contributor


@pytest.mark.parametrize("name", ["modules/host-storage.bicep", "modules/source-account.bicep", "modules/state-storage.bicep"])
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


# -- state in the app's own account ------------------------------------------------------------
def role_ids(name: str) -> list[str]:
    found = []
    for assignment in resources(name, "Microsoft.Authorization/roleAssignments"):
        reference = assignment["config"]["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        found.append(str(variable(name, reference)))
    return found


def module_output(value: Any) -> tuple[str, str] | None:
    """`module.outputs.name` as pycep reads it -> (module, output); None for anything else."""
    try:
        operands = value["operator"]["operands"]
        inner = operands["operand_2"]["operator"]["operands"]
    except (KeyError, TypeError):
        return None
    return (operands["operand_1"], inner["operand_2"]) if inner["operand_1"] == "outputs" else None


def test_the_app_only_reads_the_source_account() -> None:
    assert role_ids("modules/source-container.bicep") == [ROLES["storage_blob_data_reader"]]
    assert resources("modules/source-account.bicep", "Microsoft.Authorization/roleAssignments") == []
    assert "stateContainerName" not in parsed("modules/source-container.bicep")["parameters"]
    container_names = [
        c["config"]["name"]
        for c in resources("modules/source-container.bicep", "Microsoft.Storage/storageAccounts/blobServices/containers")
    ]
    assert container_names == ["sourceContainerName"]


def test_state_lives_in_an_account_of_its_own_and_the_app_is_pointed_at_it() -> None:
    modules = parsed("main.bicep")["modules"]
    state = modules["stateStorage"]["config"]["params"]
    assert modules["stateStorage"]["detail"]["path"] == "modules/state-storage.bicep"
    # Not the source account (passed by name to the source module) and not the host account.
    assert state["name"] not in {
        modules["sourceStorage"]["config"]["params"]["accountName"],
        modules["hostStorage"]["config"]["params"]["name"],
    }
    assert state["containerName"] == "stateContainerName"
    settings = app_settings_in_bicep()
    assert module_output(settings["STATE_STORAGE_ACCOUNT_URL"]) == ("stateStorage", "blobEndpoint")
    assert module_output(settings["SOURCE_STORAGE_ACCOUNT_URL"]) == ("sourceStorage", "blobEndpoint")
    assert settings["STATE_CONTAINER"] == "stateContainerName"
    # Contributor on the state container (reports, records, leases) and nothing wider there.
    assert role_ids("modules/state-storage.bicep") == [ROLES["storage_blob_data_contributor"]]
    # The host account is the app's too (Blob Data Owner, as Flex Consumption needs), but holds no state.
    # The run queue is there too: the app sends and reads it, Event Grid may only send to it.
    assert sorted(role_ids("modules/host-storage.bicep")) == sorted(
        [ROLES["storage_blob_data_owner"], ROLES["storage_queue_data_contributor"], ROLES["storage_queue_data_message_sender"]]
    )


def test_state_blobs_are_versioned_and_soft_deleted() -> None:
    (service,) = resources("modules/state-storage.bicep", "Microsoft.Storage/storageAccounts/blobServices")
    properties = service["config"]["properties"]
    assert properties["isVersioningEnabled"] is True
    parameters = parsed("modules/state-storage.bicep")["parameters"]
    for policy in ("deleteRetentionPolicy", "containerDeleteRetentionPolicy"):
        assert properties[policy]["enabled"] is True
        days = properties[policy]["days"]
        assert (parameters[days]["default"] if isinstance(days, str) else days) >= 1


def test_rejects_are_deleted_after_the_retention_days_versions_included() -> None:
    rule = lifecycle_rules()["delete-rejects"]["definition"]
    assert rule["filters"]["prefixMatch"] == ["${containerName}/rejects/"]
    assert rule["filters"]["blobTypes"] == ["blockBlob"]
    actions = rule["actions"]
    assert actions["baseBlob"]["delete"] == {"daysAfterModificationGreaterThan": "rejectsRetentionDays"}
    # With versioning on, a deleted rejects CSV lives on as a previous version unless this goes too.
    assert actions["version"]["delete"] == {"daysAfterCreationGreaterThan": "rejectsRetentionDays"}
    assert actions["snapshot"]["delete"] == {"daysAfterCreationGreaterThan": "rejectsRetentionDays"}
    # REJECTS_RETENTION_DAYS, default 30, flows from azd's environment down to the rule.
    assert parsed("modules/state-storage.bicep")["parameters"]["rejectsRetentionDays"]["default"] == 30
    assert parsed("main.bicep")["parameters"]["rejectsRetentionDays"]["default"] == 30
    state = parsed("main.bicep")["modules"]["stateStorage"]["config"]["params"]
    assert state["rejectsRetentionDays"] == "rejectsRetentionDays"
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["rejectsRetentionDays"] == {"value": "${REJECTS_RETENTION_DAYS=30}"}


def test_old_versions_of_state_blobs_expire() -> None:
    rule = lifecycle_rules()["expire-old-versions"]["definition"]
    assert rule["filters"]["prefixMatch"] == ["${containerName}/"]
    assert set(rule["actions"]) == {"version"}  # current blobs are the app's to keep or delete
    days = rule["actions"]["version"]["delete"]["daysAfterCreationGreaterThan"]
    assert parsed("modules/state-storage.bicep")["parameters"][days]["default"] >= 1


# -- audit logs -----------------------------------------------------------------------------
def diagnostic_categories(name: str) -> dict[str, set[str]]:
    """scope -> enabled log categories of each diagnostic setting in a file."""
    found: dict[str, set[str]] = {}
    for setting in resources(name, "Microsoft.Insights/diagnosticSettings"):
        config = setting["config"]
        assert config["properties"]["workspaceId"] == "workspaceId"
        found[config["scope"]] = {log["category"] for log in config["properties"]["logs"] if log["enabled"]}
    return found


def test_key_vault_audit_events_and_state_writes_and_deletes_go_to_log_analytics() -> None:
    assert diagnostic_categories("modules/keyvault.bicep") == {"vault": {"AuditEvent"}}
    assert diagnostic_categories("modules/state-storage.bicep") == {"blobs": {"StorageWrite", "StorageDelete"}}
    # `blobs` is the state account's blob service: logs are per service, not per account.
    (service,) = resources("modules/state-storage.bicep", "Microsoft.Storage/storageAccounts/blobServices")
    assert service["config"]["name"] == "default"
    # Both modules get the workspace that monitoring.bicep creates.
    modules = parsed("main.bicep")["modules"]
    for module in ("vault", "stateStorage"):
        assert module_output(modules[module]["config"]["params"]["workspaceId"]) == ("monitoring", "workspaceId")
    outputs = parsed("modules/monitoring.bicep")["outputs"]
    assert "workspaceId" in outputs


# -- the deploying principal ----------------------------------------------------------------
def app_identity_parameters() -> dict[str, set[str]]:
    """module file -> its parameters that main.bicep fills with the app's identity."""
    found: dict[str, set[str]] = {}
    for module in parsed("main.bicep")["modules"].values():
        config = module["config"]["config"] if "condition" in module["config"] else module["config"]
        for param, value in config["params"].items():
            if module_output(value) == ("identity", "principalId"):
                found.setdefault(module["detail"]["path"], set()).add(param)
    return found


def test_the_deploying_principals_type_is_a_parameter_filled_by_azd() -> None:
    app_identity = app_identity_parameters()
    checked = 0
    for path in BICEP_FILES:
        name = str(path.relative_to(INFRA))
        for assignment in resources(name, "Microsoft.Authorization/roleAssignments"):
            principal = assignment["config"]["properties"]["principalId"]
            kind = assignment["config"]["properties"]["principalType"]
            # The app's own identity is a service principal; anyone else's type is a parameter.
            if principal in app_identity.get(name, set()):
                assert kind == "ServicePrincipal", f"{name}: {principal}"
            else:
                assert kind in parsed(name)["parameters"], f"{name}: principalType of {principal} is hard-coded"
            checked += 1
    assert checked >= 6
    (operator,) = [
        a
        for a in resources("modules/keyvault.bicep", "Microsoft.Authorization/roleAssignments")
        if a["config"]["properties"]["principalId"] == "operatorPrincipalId"
    ]
    assert operator["config"]["properties"]["principalType"] == "operatorPrincipalType"
    main = parsed("main.bicep")
    allowed = next(d["argument"] for d in main["parameters"]["principalType"]["decorators"] if d["type"] == "allowed")
    assert {"User", "ServicePrincipal"} <= set(allowed)
    assert main["parameters"]["principalType"]["default"] == "User"
    assert main["modules"]["vault"]["config"]["params"]["operatorPrincipalType"] == "principalType"
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["principalType"] == {"value": "${AZURE_PRINCIPAL_TYPE}"}


# -- the lock file the deployment installs from ---------------------------------------------
def pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of each `name==version` requirement in a file."""
    found: dict[str, tuple[str, int]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            found[name] = (match.group(2), line.count("--hash=sha256:"))
    return found


def test_the_lock_pins_every_requirement_at_its_version_with_hashes() -> None:
    direct = pins(ROOT / "requirements.in")
    locked = pins(ROOT / "requirements.lock")
    assert direct, "requirements.in pins nothing"
    for name, (version, _) in direct.items():
        assert name in locked, f"{name} is in requirements.in but not in requirements.lock: regenerate it"
        assert locked[name][0] == version, f"{name}: {version} in requirements.in, {locked[name][0]} locked"
    # Transitive dependencies are pinned too, and everything carries a hash (--require-hashes).
    assert len(locked) > len(direct)
    assert all(hashes for _, hashes in locked.values()), [n for n, (_, h) in locked.items() if not h]


# -- alerts and the workbook query what the app emits ----------------------------------------
# Where each name the app emits lands in Application Insights (classic table names, as seen
# from the workspace-based component): the ExportRun event in customEvents (properties in
# customDimensions, measurements in customMeasurements), metrics in customMetrics, stage spans
# in dependencies, and the Functions host's log lines (the poison-queue warning) in traces.
TABLES = {"customEvents", "customMetrics", "dependencies", "traces"}
KQL_KEYWORDS = {"let", "datatable", "print", "union"}


def alert_queries() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((INFRA / "alerts").glob("*.kql"))}


def workbook_queries() -> dict[str, str]:
    workbook = json.loads((INFRA / "workbook.json").read_text())
    return {item["name"]: item["content"]["query"] for item in workbook["items"] if item["type"] == 3}


def kql_names(query: str) -> tuple[set[str], set[str], set[str], set[str]]:
    """(tables, customDimensions keys, customMeasurements keys, `name == "..."` values) of a query."""
    body = "\n".join(line for line in query.splitlines() if not line.strip().startswith("//"))
    statements = [s.strip() for s in re.split(r";\s*\n", body) if s.strip()]
    tables = {found.group(0) for s in statements if (found := re.match(r"[A-Za-z_]\w*", s))}
    dimensions = set(re.findall(r"customDimensions\.(\w+)", body)) | set(re.findall(r'customDimensions\["([^"]+)"\]', body))
    measurements = set(re.findall(r"customMeasurements\.(\w+)", body)) | set(re.findall(r'customMeasurements\["([^"]+)"\]', body))
    names = set(re.findall(r'\bname\s*==\s*"([^"]+)"', body))
    return tables - KQL_KEYWORDS, dimensions, measurements, names


def test_five_alerts_each_query_a_table_and_columns_the_app_writes() -> None:
    queries = alert_queries()
    assert len(queries) == 5
    emitted_dimensions = set(telemetry.EVENT_PROPERTIES) | {"export", "status", "outcome"}
    for name, query in {**queries, **workbook_queries()}.items():
        tables, dimensions, measurements, names = kql_names(query)
        assert tables and tables <= TABLES, (name, tables)
        assert dimensions <= emitted_dimensions, (name, dimensions - emitted_dimensions)
        assert measurements <= set(telemetry.EVENT_MEASUREMENTS), (name, measurements)
        assert names <= {telemetry.EVENT_NAME, telemetry.METRIC_RUNS, telemetry.METRIC_CONTACTS, telemetry.METRIC_DURATION}, (
            name,
            names,
        )
        if "customEvents" in tables:
            assert names == {telemetry.EVENT_NAME}, name  # every event query picks the app's event
    # The checker is not vacuous: a misspelt column or table is caught.
    assert kql_names("customEvent\n| where customDimensions.exprt == 1")[:2] == ({"customEvent"}, {"exprt"})
    # The poison alert looks for the queue engine's poison queue by name (issue 12), from the
    # runQueueName parameter (tests/unit/test_edges_infra.py).
    assert "'{runQueueName}-poison'" in queries["poison-message.kql"]


def test_alert_thresholds_are_parameters_wired_to_azd_and_placeholders_are_all_filled() -> None:
    alerts = parsed("modules/alerts.bicep")
    parameters = alerts["parameters"]
    assert parameters["staleHours"]["default"] == 26 and parameters["rejectPercent"]["default"] == 5
    assert parameters["alertEmail"]["default"] == ""
    text = (INFRA / "modules" / "alerts.bicep").read_text()
    for placeholder in set(re.findall(r"\{([A-Za-z]\w*)\}", "".join(alert_queries().values()))):
        assert f"'{{{placeholder}}}', string({placeholder})" in text, placeholder
    module = parsed("main.bicep")["modules"]["alerts"]["config"]["params"]
    assert module_output(module["insightsId"]) == ("monitoring", "insightsId")
    assert (module["staleHours"], module["rejectPercent"], module["alertEmail"]) == (
        "alertStaleHours",
        "alertRejectRate",
        "alertEmail",
    )
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["alertStaleHours"] == {"value": "${ALERT_STALE_HOURS=26}"}
    assert mapped["alertRejectRate"] == {"value": "${ALERT_REJECT_RATE=5}"}
    assert mapped["alertEmail"] == {"value": "${ALERT_EMAIL=}"}
    (group,) = resources("modules/alerts.bicep", "Microsoft.Insights/actionGroups")
    assert group["config"]["properties"]["emailReceivers"] == "receivers"
    (rules,) = resources("modules/alerts.bicep", "Microsoft.Insights/scheduledQueryRules")
    assert text_of(rules["config"]).count("actionGroups")
