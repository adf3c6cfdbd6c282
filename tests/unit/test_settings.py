"""Settings and definitions: every error names what is wrong."""

from __future__ import annotations

import json

import pytest
from helpers import LIST_ID, definition

from shared.definitions import parse_definition
from shared.errors import ExportError
from shared.settings import SETTINGS, SettingsError, load_settings

BASE = {
    "SOURCE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "SOURCE_CONTAINER": "customer-insights",
    "SENDGRID_API_KEY": "SG.local",
    "EXPORT_DEFINITIONS": json.dumps([definition()]),
}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.state_container == "sendgrid-export-state"
    assert settings.sendgrid_base_url == "https://api.sendgrid.com"
    assert settings.api_key_secret_name == "sendgrid-api-key"
    assert settings.schedule == "0 0 2 * * *"
    assert list(settings.definitions) == ["vip"]
    assert "SG.local" not in repr(settings)  # the key never shows in a repr (or a log of one)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SOURCE_CONTAINER": ""}, "SOURCE_CONTAINER"),
        ({"SOURCE_CONTAINER": "Bad_Name"}, "SOURCE_CONTAINER"),
        ({"STATE_CONTAINER": "x"}, "STATE_CONTAINER"),
        ({"SOURCE_STORAGE_CONNECTION_STRING": ""}, "SOURCE_STORAGE_CONNECTION_STRING"),
        ({"SOURCE_STORAGE_CONNECTION_STRING": "", "SOURCE_STORAGE_ACCOUNT_URL": "http://acct"}, "SOURCE_STORAGE_ACCOUNT_URL"),
        ({"SENDGRID_API_KEY": ""}, "KEY_VAULT_URL"),
        ({"KEY_VAULT_URL": "http://vault"}, "KEY_VAULT_URL"),
        ({"SENDGRID_API_BASE_URL": "ftp://x"}, "SENDGRID_API_BASE_URL"),
        # Plain http only to this machine: elsewhere the API key would cross a network in clear.
        ({"SENDGRID_API_BASE_URL": "http://api.sendgrid.com"}, "SENDGRID_API_BASE_URL"),
        ({"SENDGRID_API_BASE_URL": "http://10.0.0.5:3001"}, "SENDGRID_API_BASE_URL"),
        ({"SENDGRID_API_BASE_URL": "http://127.0.0.1.evil.example"}, "SENDGRID_API_BASE_URL"),
        ({"SENDGRID_API_BASE_URL": "http://localhost@evil.example"}, "SENDGRID_API_BASE_URL"),
        ({"SENDGRID_API_BASE_URL": "https://"}, "SENDGRID_API_BASE_URL"),
        ({"STATE_STORAGE_ACCOUNT_URL": "http://state.blob.core.windows.net"}, "STATE_STORAGE_ACCOUNT_URL"),
        # A 5,000-digit number or deep nesting: a SettingsError (health answers 503), not a crash.
        ({"EXPORT_DEFINITIONS": "[" + "1" * 5000 + "]"}, "EXPORT_DEFINITIONS"),
        ({"EXPORT_DEFINITIONS": "[" * 100_000 + "]" * 100_000}, "EXPORT_DEFINITIONS"),
        ({"EXPORT_DEFINITIONS": json.dumps([{"name": "vip\n"}])}, "EXPORT_DEFINITIONS[0].name"),
        # A blank EXPORT_DEFINITIONS is unset: the definitions file is read (tests/unit/test_definitions_file.py).
        ({"EXPORT_DEFINITIONS": "null"}, "EXPORT_DEFINITIONS"),
        ({"EXPORT_DEFINITIONS": "[{"}, "EXPORT_DEFINITIONS"),
        ({"EXPORT_DEFINITIONS": "{}"}, "EXPORT_DEFINITIONS"),
        ({"EXPORT_DEFINITIONS": json.dumps([{"name": "Bad Name"}])}, "EXPORT_DEFINITIONS[0].name"),
        ({"EXPORT_DEFINITIONS": json.dumps([definition(), definition()])}, "two exports named 'vip'"),
    ],
)
def test_bad_settings_name_the_setting(change: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings({**BASE, **change})


def test_vault_url_wins_over_a_local_key() -> None:
    settings = load_settings({**BASE, "KEY_VAULT_URL": "https://my-vault.vault.azure.net/"})
    assert settings.key_vault_url == "https://my-vault.vault.azure.net"
    assert settings.local_api_key is None


@pytest.mark.parametrize(
    ("change", "code", "text"),
    [
        ({"privacy_consent": False}, "consent_required", "privacy_consent"),
        ({"privacy_consent": "yes"}, "consent_required", "privacy_consent"),
        ({"mapping": {"first_name": "FirstName"}}, "invalid_definition", "mapping.email"),
        ({"mapping": {"email": "EMail", "shoe": "Shoe"}}, "invalid_definition", "shoe"),
        ({"mapping": {"email": ""}}, "invalid_definition", "mapping.email"),
        ({"list_ids": []}, "invalid_definition", "list_ids"),
        ({"list_ids": ["not-a-uuid"]}, "invalid_definition", "not-a-uuid"),
        ({"list_ids": [LIST_ID, LIST_ID]}, "invalid_definition", "twice"),
        ({"custom_fields": {"email": "EMail"}}, "invalid_definition", "reserved"),
        ({"max_profiles": 0}, "invalid_definition", "max_profiles"),
        ({"max_profiles": True}, "invalid_definition", "max_profiles"),
        ({"on_overlength": "chop"}, "invalid_definition", "on_overlength"),
        ({"enabled": "no"}, "invalid_definition", "enabled"),
        ({"segment": ""}, "invalid_definition", "segment"),
        ({"sourcefolder": "x"}, "invalid_definition", "sourcefolder"),
    ],
)
def test_bad_definitions_fail_with_the_field_named(change: dict[str, object], code: str, text: str) -> None:
    with pytest.raises(ExportError) as caught:
        parse_definition(definition(**change))
    assert caught.value.code == code
    assert text in caught.value.message


def test_a_good_definition_round_trips_without_secrets() -> None:
    parsed = parse_definition(definition(custom_fields={"loyalty_tier": "Tier"}, max_profiles=5))
    public = parsed.to_public_dict()
    assert public["list_ids"] == [LIST_ID] and public["max_profiles"] == 5 and public["on_overlength"] == "truncate"
    assert (
        parsed.fingerprint() == parse_definition(definition(custom_fields={"loyalty_tier": "Tier"}, max_profiles=5)).fingerprint()
    )
    assert parsed.fingerprint() != parse_definition(definition()).fingerprint()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:3001", "http://127.3.2.1", "http://localhost:3001/", "http://[::1]:3001", "https://api.sendgrid.com"],
)
def test_plain_http_is_for_loopback_sandboxes_only(url: str) -> None:
    assert load_settings({**BASE, "SENDGRID_API_BASE_URL": url}).sendgrid_base_url == url.rstrip("/")


def test_state_storage_defaults_to_the_source_account() -> None:
    local = load_settings(BASE)
    assert local.state_connection_string == "UseDevelopmentStorage=true" and local.state_account_url is None
    deployed = load_settings(
        {**BASE, "SOURCE_STORAGE_CONNECTION_STRING": "", "SOURCE_STORAGE_ACCOUNT_URL": "https://ci.blob.core.windows.net"}
    )
    assert deployed.state_account_url == "https://ci.blob.core.windows.net" and deployed.state_connection_string is None
    own = load_settings({**BASE, "STATE_STORAGE_ACCOUNT_URL": "https://appstate.blob.core.windows.net/"})
    assert own.state_account_url == "https://appstate.blob.core.windows.net" and own.state_connection_string is None
    assert own.source_connection_string == "UseDevelopmentStorage=true"
    assert "AccountKey" not in repr(load_settings({**BASE, "STATE_STORAGE_CONNECTION_STRING": "AccountKey=s3cret"}))


class RecordingEnv(dict[str, str]):
    """The environment, noting every name the app asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def test_every_setting_read_is_declared_once_with_a_description() -> None:
    env = RecordingEnv({**BASE, "KEY_VAULT_URL": "https://v.vault.azure.net"})
    load_settings(env)
    assert env.asked == set(SETTINGS)  # nothing read that is not declared, nothing declared and unread
    assert all(info.description for info in SETTINGS.values())
    local_only = {name for name, info in SETTINGS.items() if info.local_only}
    assert local_only == {"SOURCE_STORAGE_CONNECTION_STRING", "STATE_STORAGE_CONNECTION_STRING", "SENDGRID_API_KEY"}
