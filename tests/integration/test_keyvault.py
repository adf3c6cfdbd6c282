"""The API key through the real SecretClient and DefaultAzureCredential, against a local HTTPS
Key Vault stand-in and a managed identity endpoint shaped like a Function App's."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import definition, sandbox_config

from shared.api import routes
from shared.errors import ExportError
from shared.sendgrid.keys import ApiKeyStore
from tools import keyvault_standin
from tools.sample_export import csv_bytes, write_export

SECRET = "sendgrid-api-key"


def store_for(vault: tuple[keyvault_standin.KeyVaultStandIn, str], **options: Any) -> ApiKeyStore:
    standin, ca_file = vault
    # The stand-in's host is localhost, not *.vault.azure.net, so the challenge's resource check
    # is off and its CA is trusted; everything else is SecretClient's production path.
    client_options = {"verify_challenge_resource": False, "connection_verify": ca_file, **options}
    return ApiKeyStore(standin.vault_url, SECRET, client_options=client_options)


def test_the_key_is_read_once_and_reread_on_request(vault: Any) -> None:
    standin, _ = vault
    standin.state.secrets[SECRET] = "SG.first"
    store = store_for(vault)
    assert store() == "SG.first" and store() == "SG.first"
    assert standin.state.secret_reads == 1 and standin.state.token_requests == 1
    standin.state.secrets[SECRET] = "SG.rotated"
    assert store() == "SG.first"  # cached per process
    assert store(True) == "SG.rotated" and standin.state.secret_reads == 2
    assert "SG." not in repr(store)


def test_a_missing_secret_or_an_unavailable_vault_is_a_clear_error(vault: Any) -> None:
    standin, _ = vault
    with pytest.raises(ExportError) as caught:
        store_for(vault)()
    assert caught.value.code == "keyvault_unavailable" and f"'{SECRET}'" in caught.value.message
    standin.state.secrets[SECRET] = "SG.x"
    standin.state.unavailable = True
    with pytest.raises(ExportError) as caught:
        store_for(vault, retry_total=0)()
    assert caught.value.code == "keyvault_unavailable" and "SG.x" not in caught.value.message


def test_a_rotated_key_is_picked_up_by_a_warm_app_without_a_restart(
    vault: Any, app_factory: Any, source_container: ContainerClient, sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    standin, _ = vault
    standin.state.secrets[SECRET] = "SG.old-key"
    sandbox_config(sandbox, api_keys=["SG.old-key"])
    write_export(
        source_container,
        "CustomerInsights_test/SendGridExport",
        "HighValueCustomers",
        [csv_bytes([["a@example.com", "A"], ["b@example.com", "B"]])],
        ("EMail", "FirstName"),
    )
    app = app_factory([definition(mapping={"email": "EMail", "first_name": "FirstName"})], api_keys=store_for(vault))
    caplog.set_level(logging.DEBUG)

    assert routes.handle(app, "POST", "vip", "run", b'{"wait": true}').body["status"] == "succeeded"
    # Rotation: the vault gets a new key and SendGrid stops accepting the old one.
    standin.state.secrets[SECRET] = "SG.new-key"
    sandbox_config(sandbox, api_keys=["SG.new-key"])
    second = routes.handle(app, "POST", "vip", "run", b'{"full_refresh": true, "wait": true}')
    assert second.status == 200 and second.body["counts"]["sent"] == 2
    assert standin.state.secret_reads == 2  # one read per key, not one per request
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SG.old-key" not in logged and "SG.new-key" not in logged
