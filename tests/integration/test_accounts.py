"""Several SendGrid accounts: a definition names its key's secret and its region; keys are read
per secret through the real SecretClient (Key Vault stand-in over HTTPS), and a second sandbox
plays the EU regional endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import LIST_ID, contacts_by_email, definition, make_app, person, run, run_all, sandbox_config, write

from shared.api import routes
from shared.definitions import parse_definition
from shared.errors import ExportError
from shared.sendgrid.keys import ApiKeyStores
from tools import keyvault_standin, sendgrid_sandbox

DEFAULT_SECRET, EU_SECRET = "sendgrid-api-key", "sendgrid-eu-key"


@pytest.fixture
def accounts_vault(vault: tuple[keyvault_standin.KeyVaultStandIn, str]) -> tuple[keyvault_standin.KeyVaultStandIn, str]:
    vault[0].state.secrets.update({DEFAULT_SECRET: "SG.global-key", EU_SECRET: "SG.eu-key"})
    return vault


@pytest.fixture
def eu_sandbox() -> Iterator[sendgrid_sandbox.SandboxServer]:
    state = sendgrid_sandbox.SandboxState(api_keys={"SG.eu-key"})
    state.add_list("newsletter-eu", LIST_ID)
    server = sendgrid_sandbox.start(state)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def two_accounts(
    accounts_vault: Any, eu_sandbox: Any, sandbox: Any, azurite: Any, source_container: ContainerClient, state_container_name: str
) -> Any:
    standin, ca_file = accounts_vault
    sandbox_config(sandbox, api_keys=["SG.global-key"])
    write(source_container, [[person(i) for i in range(1, 4)]])
    keys = ApiKeyStores(
        standin.vault_url, DEFAULT_SECRET, client_options={"verify_challenge_resource": False, "connection_verify": ca_file}
    )
    definitions = [definition(), definition(name="eu", sendgrid_api_key_secret=EU_SECRET, sendgrid_region="eu")]
    return make_app(
        azurite,
        source_container,
        state_container_name,
        sandbox.url,
        definitions,
        api_keys=keys,
        SENDGRID_EU_API_BASE_URL=eu_sandbox.url,
    )


def test_each_export_sends_to_its_own_account_with_its_own_key(
    two_accounts: Any, sandbox: Any, eu_sandbox: Any, accounts_vault: Any
) -> None:
    assert run(two_accounts, "vip").status == 200
    assert run(two_accounts, "eu").status == 200
    assert set(contacts_by_email(sandbox)) == {f"person{i}@example.com" for i in range(1, 4)}
    assert set(contacts_by_email(eu_sandbox)) == {f"person{i}@example.com" for i in range(1, 4)}
    standin, _ = accounts_vault
    assert standin.state.secret_reads == 2  # one read per secret, then cached
    run(two_accounts, "eu")
    assert standin.state.secret_reads == 2


def test_one_exports_bad_key_fails_only_that_export_and_a_rotated_key_is_reread_for_it_alone(
    two_accounts: Any, sandbox: Any, eu_sandbox: Any, accounts_vault: Any
) -> None:
    standin, _ = accounts_vault
    standin.state.secrets[EU_SECRET] = "SG.wrong"
    summaries = {s["export"]: s for s in run_all(two_accounts)}
    assert summaries["vip"]["status"] == "succeeded"
    assert summaries["eu"]["status"] == "failed" and summaries["eu"]["error"] == "sendgrid_auth_failed"
    reads = standin.state.secret_reads
    standin.state.secrets[EU_SECRET] = "SG.eu-key"  # the operator fixes the EU secret
    assert run(two_accounts, "eu").status == 200  # the 401 re-read the EU key; the global one is kept
    assert standin.state.secret_reads == reads + 1
    assert run(two_accounts, "vip").status == 200 and standin.state.secret_reads == reads + 1


def test_the_listing_names_each_exports_secret_and_never_a_key(two_accounts: Any) -> None:
    listing = routes.handle(two_accounts, "GET", None, None)
    secrets = {e["name"]: (e["sendgrid_api_key_secret"], e["sendgrid_region"]) for e in listing.body["exports"]}
    assert secrets == {"vip": (DEFAULT_SECRET, "global"), "eu": (EU_SECRET, "eu")}
    assert "SG." not in listing.json()


def test_account_fields_are_validated_and_a_changed_account_changes_the_fingerprint() -> None:
    for bad in ({"sendgrid_region": "us"}, {"sendgrid_api_key_secret": "no spaces"}, {"sendgrid_api_key_secret": 3}):
        with pytest.raises(ExportError, match="sendgrid_"):
            parse_definition(definition(**bad))
    plain = parse_definition(definition())
    # Definitions naming no account keep the fingerprint they had (their checkpoints stay valid)...
    assert plain.fingerprint() == parse_definition(definition(sendgrid_region="global")).fingerprint()
    # ...and another account never resumes a checkpoint made for the first.
    assert plain.fingerprint() != parse_definition(definition(sendgrid_api_key_secret=EU_SECRET)).fingerprint()
    assert plain.fingerprint() != parse_definition(definition(sendgrid_region="eu")).fingerprint()
