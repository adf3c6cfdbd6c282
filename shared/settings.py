"""App settings (environment variables): the public contract, read and validated once.

Every setting is declared once, with what it is for, in `SETTINGS` (the infra tests check the
deployment against it); `load_settings` reads no other name. Every error names the setting at
fault. Export definitions are kept raw by name here and validated one by one when used, so that
one bad definition does not stop the others.

The definitions come from the EXPORT_DEFINITIONS setting when it is set, else from the
definitions file deployed with the app (EXPORT_DEFINITIONS_FILE, default exports.json beside
host.json; the default file may be absent). Reading that small local file, once, is the only I/O
here: no network, nothing outside the app root.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from shared.definitions import definition_name
from shared.errors import ExportError

log = logging.getLogger(__name__)

DEFAULT_STATE_CONTAINER = "sendgrid-export-state"
DEFAULT_SECRET_NAME = "sendgrid-api-key"
DEFAULT_SENDGRID_BASE_URL = "https://api.sendgrid.com"
# EU regional subusers are served only from this root (Twilio SendGrid "Regional EU" docs:
# https://www.twilio.com/docs/sendgrid/for-developers/sending-email/regional-eu).
DEFAULT_SENDGRID_EU_BASE_URL = "https://api.eu.sendgrid.com"
DEFAULT_SCHEDULE = "0 0 2 * * *"
# host.json sets functionTimeout to 30 minutes; a run stops sending 5 minutes before that.
DEFAULT_RUN_TIME_LIMIT = 25 * 60
# A run's SendGrid import jobs are confirmed by delayed queue messages, not by a sleeping run, so
# the wait can be long: SendGrid says 100,000 contacts "can take up to a few hours" (docs/reference.md).
DEFAULT_JOB_WAIT = 6 * 3600
DEFAULT_RUN_QUEUE = "export-runs"
DEFAULT_CONFIRM_INTERVAL = 60  # seconds before the first `confirm` message; doubling to 15 minutes
DEFAULT_SNAPSHOT_SETTLE = 120  # seconds an event-triggered run waits for the partitions to land
DEFAULT_RUN_LEASE = 60  # seconds; Blob Storage leases last 15 to 60 seconds (or forever)
# The app root: the folder holding host.json (and shared/), deployed as a whole. The definitions
# file is read from it: a small local file deployed with the app, read once when settings load.
APP_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEFINITIONS_FILE = "exports.json"
MAX_DEFINITIONS_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SettingInfo:
    description: str
    local_only: bool = False  # for local development only: never set in a deployment


SETTINGS: dict[str, SettingInfo] = {
    "SOURCE_CONTAINER": SettingInfo("Blob container Customer Insights exports segments to (required)"),
    "SOURCE_STORAGE_ACCOUNT_URL": SettingInfo("Blob endpoint of the source account, reached with the app's identity"),
    "SOURCE_STORAGE_CONNECTION_STRING": SettingInfo("Connection string of the source account (Azurite)", local_only=True),
    "STATE_STORAGE_ACCOUNT_URL": SettingInfo("Blob endpoint of the app's own account for run state; default: the source account"),
    "STATE_STORAGE_CONNECTION_STRING": SettingInfo(
        "Connection string of the state account; default: the source account's", local_only=True
    ),
    "STATE_CONTAINER": SettingInfo(f"Container for records, reports and locks (default {DEFAULT_STATE_CONTAINER})"),
    "KEY_VAULT_URL": SettingInfo("Key Vault holding the SendGrid API key (required unless SENDGRID_API_KEY)"),
    "SENDGRID_API_KEY_SECRET_NAME": SettingInfo(f"Name of the API key secret (default {DEFAULT_SECRET_NAME})"),
    "SENDGRID_API_KEY": SettingInfo("A SendGrid API key in plain text, ignored when KEY_VAULT_URL is set", local_only=True),
    "SENDGRID_API_BASE_URL": SettingInfo(
        f"SendGrid API root (default {DEFAULT_SENDGRID_BASE_URL}); http:// only for a loopback sandbox"
    ),
    "SENDGRID_EU_API_BASE_URL": SettingInfo(
        f"SendGrid API root of definitions with sendgrid_region 'eu' (default {DEFAULT_SENDGRID_EU_BASE_URL}); "
        "http:// only for a loopback sandbox"
    ),
    "EXPORT_SCHEDULE": SettingInfo(f"NCRONTAB schedule of the timer trigger (default {DEFAULT_SCHEDULE})"),
    "EXPORT_DEFINITIONS": SettingInfo("JSON array of export definitions; when set, it wins over EXPORT_DEFINITIONS_FILE"),
    "EXPORT_DEFINITIONS_FILE": SettingInfo(
        f"Path of the definitions file deployed with the app, relative to the app root (default {DEFAULT_DEFINITIONS_FILE}, "
        "beside host.json; the default file may be absent: no exports then)"
    ),
    "RUN_TIME_LIMIT_SECONDS": SettingInfo(f"Seconds a run may send before it checkpoints (default {DEFAULT_RUN_TIME_LIMIT})"),
    "JOB_WAIT_SECONDS": SettingInfo(
        f"Seconds import jobs are confirmed by delayed queue messages before the run's "
        f"report is final (default {DEFAULT_JOB_WAIT})"
    ),
    "RUN_QUEUE": SettingInfo(f"Storage queue of the run engine, in the host's storage account (default {DEFAULT_RUN_QUEUE})"),
    "AzureWebJobsStorage__queueServiceUri": SettingInfo(
        "Queue endpoint of the host's storage account, reached with the app's identity; without it the run queue "
        "is in the state account's connection string (local use)"
    ),
    "CONFIRM_INTERVAL_SECONDS": SettingInfo(
        f"Seconds before the first check of a run's import jobs, doubling to 15 minutes (default {DEFAULT_CONFIRM_INTERVAL})"
    ),
    "SNAPSHOT_SETTLE_SECONDS": SettingInfo(
        f"Seconds an event-triggered run waits after the metadata blob is written (default {DEFAULT_SNAPSHOT_SETTLE})"
    ),
    "RUN_LEASE_SECONDS": SettingInfo(f"Length of the run lock's blob lease, 15-60 (default {DEFAULT_RUN_LEASE})"),
    "SENDGRID_MAX_CONTACTS_PER_REQUEST": SettingInfo("Contacts per upsert request, 1-30000 (default 30000)"),
}


class SettingsError(Exception):
    """A missing or malformed app setting; the message names it."""


@dataclass(frozen=True)
class Settings:
    source_container: str
    definitions: dict[str, dict[str, Any]]
    # Where the definitions came from: "EXPORT_DEFINITIONS", the file's path ("exports.json"), or
    # None (neither: no exports).
    definitions_from: str | None = None
    source_connection_string: str | None = field(default=None, repr=False)
    source_account_url: str | None = None
    # Where the state container lives: an account the app owns (defaults to the source's).
    state_connection_string: str | None = field(default=None, repr=False)
    state_account_url: str | None = None
    state_container: str = DEFAULT_STATE_CONTAINER
    key_vault_url: str | None = None
    api_key_secret_name: str = DEFAULT_SECRET_NAME
    local_api_key: str | None = field(default=None, repr=False)
    sendgrid_base_url: str = DEFAULT_SENDGRID_BASE_URL
    sendgrid_eu_base_url: str = DEFAULT_SENDGRID_EU_BASE_URL
    schedule: str = DEFAULT_SCHEDULE
    run_time_limit_seconds: int = DEFAULT_RUN_TIME_LIMIT
    job_wait_seconds: int = DEFAULT_JOB_WAIT
    run_lease_seconds: int = DEFAULT_RUN_LEASE
    max_contacts_per_request: int = 30_000
    run_queue: str = DEFAULT_RUN_QUEUE
    queue_service_url: str | None = None  # None: the queue is in the state account's connection string
    confirm_interval_seconds: int = DEFAULT_CONFIRM_INTERVAL
    snapshot_settle_seconds: int = DEFAULT_SNAPSHOT_SETTLE


def _get(env: Mapping[str, str], key: str) -> str | None:
    if key not in SETTINGS:  # every name the app reads is declared, once, in SETTINGS
        raise KeyError(f"setting {key} is not declared in SETTINGS")
    value = env.get(key)
    return value.strip() if value and value.strip() else None


def _container_name(env: Mapping[str, str], key: str, default: str | None) -> str:
    value = _get(env, key) or default
    if not value:
        raise SettingsError(f"{key} is required: the blob container name")
    # Azure container names: 3-63 chars, lowercase letters, digits and single hyphens.
    ok = 3 <= len(value) <= 63 and value[0].isalnum() and "--" not in value
    ok = ok and all(c.islower() or c.isdigit() or c == "-" for c in value)
    if not ok:
        raise SettingsError(f"{key} '{value}' is not a valid blob container name")
    return value


def _queue_name(env: Mapping[str, str], key: str, default: str) -> str:
    value = _get(env, key) or default
    # Azure queue names: 3-63 chars, lowercase letters, digits and single hyphens, no hyphen at
    # either end; "-poison" is appended for the poison queue, so 56 at most here.
    ok = 3 <= len(value) <= 56 and value[0].isalnum() and value[-1].isalnum() and "--" not in value
    ok = ok and all(c.islower() or c.isdigit() or c == "-" for c in value)
    if not ok:
        raise SettingsError(f"{key} '{value[:63]}' is not a valid queue name (3-56 of a-z, 0-9 and single hyphens)")
    return value


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def _https_url(env: Mapping[str, str], key: str, *, allow_loopback_http: bool = False) -> str | None:
    value = _get(env, key)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise SettingsError(f"{key} is not a valid URL") from None
    plain_ok = allow_loopback_http and parts.scheme == "http" and _is_loopback(host)
    if not host or not (parts.scheme == "https" or plain_ok):
        hint = " (http:// only for a loopback address)" if allow_loopback_http else ""
        raise SettingsError(f"{key} must be an https:// URL{hint}")
    return value.rstrip("/")


def _whole_number(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    value = _get(env, key)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise SettingsError(f"{key} must be a whole number from {low} to {high}")
    return int(value)


class _Refused(ValueError):
    """A JSON construct a definitions document may not hold (a duplicate key, NaN)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Refused(f"an object names {key[:60]!r} twice")
        seen.add(key)
    return dict(pairs)


def _no_constant(text: str) -> Any:
    raise _Refused(f"{text} is not a JSON number")


def parse_definitions_document(text: str | None, source: str = "EXPORT_DEFINITIONS") -> dict[str, dict[str, Any]]:
    """The definitions in a JSON document, raw by name: a bare array of definitions, or an object
    {"$schema": ..., "exports": [...]} (the file's form; `$schema` is for editors). `source` names
    the document in every error (the setting, or the file and the setting naming it). Each entry
    needs a usable, unique name here; the rest of it is checked when it is used."""
    if not text or not text.strip():
        raise SettingsError(f"{source} is empty: it must hold a JSON array of export definitions")
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except _Refused as exc:
        raise SettingsError(f"{source} is not JSON this app reads: {exc}") from None
    except (ValueError, RecursionError):  # a number of thousands of digits, nesting beyond the stack
        raise SettingsError(f"{source} is not JSON this app reads (a huge number or deep nesting)") from None
    where = source
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"$schema", "exports"})
        if unknown or not isinstance(raw.get("exports"), list):
            extra = f" (not {', '.join(repr(k[:40]) for k in unknown)})" if unknown else ""
            raise SettingsError(
                f'{source} must be a JSON array of export definitions, or an object {{"$schema": ..., "exports": [...]}}{extra}'
            )
        raw, where = raw["exports"], f"{source}: exports"
    if not isinstance(raw, list):
        raise SettingsError(f"{source} must be a JSON array of export definitions")
    by_name: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(raw):
        try:
            name = definition_name(entry, index, f"{where}[{index}]")
        except ExportError as exc:  # re-raised as a settings problem
            raise SettingsError(exc.message) from None
        if name in by_name:
            raise SettingsError(f"{source} has two exports named '{name}'")
        by_name[name] = entry
    return by_name


def parse_definitions_setting(text: str | None) -> dict[str, dict[str, Any]]:
    if not text:
        raise SettingsError("EXPORT_DEFINITIONS is required: a JSON array of export definitions")
    return parse_definitions_document(text, "EXPORT_DEFINITIONS")


def definitions_file(relative: str, app_root: Path = APP_ROOT) -> Path:
    """The definitions file a relative path names, inside the app root; a path that leads out of
    it (absolute, `..`, or through a link) is refused: the app reads only what is deployed with it."""
    root = app_root.resolve()
    candidate = (root / relative).resolve()
    if PurePosixPath(relative.replace("\\", "/")).is_absolute() or not candidate.is_relative_to(root):
        raise SettingsError(f"EXPORT_DEFINITIONS_FILE {relative[:200]!r} leads out of the app root; give a path inside it")
    return candidate


def read_definitions_file(path: Path, label: str) -> str:
    """The text of a definitions file (UTF-8, a BOM allowed); errors name `label`."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DEFINITIONS_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"{label} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_DEFINITIONS_FILE_BYTES:
        raise SettingsError(f"{label} is over {MAX_DEFINITIONS_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{label} is not UTF-8 text (byte {exc.start})") from None


def load_definitions(env: Mapping[str, str], app_root: Path = APP_ROOT) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The export definitions and where they came from: the EXPORT_DEFINITIONS setting when it is
    set (it wins), else the file EXPORT_DEFINITIONS_FILE names (default exports.json beside
    host.json). The default file may be absent: no definitions, and (None) says so. A file the
    setting names must be there."""
    named = _get(env, "EXPORT_DEFINITIONS_FILE")
    path = definitions_file(named or DEFAULT_DEFINITIONS_FILE, app_root)  # a path out of the app is refused either way
    text = _get(env, "EXPORT_DEFINITIONS")
    if text is not None:
        return parse_definitions_document(text, "EXPORT_DEFINITIONS"), "EXPORT_DEFINITIONS"
    shown = path.relative_to(app_root.resolve()).as_posix()
    label = f"the definitions file {shown} (EXPORT_DEFINITIONS_FILE)"
    if not path.is_file():
        if named is None and not path.exists():
            return {}, None
        raise SettingsError(f"{label} is not a file in the app root")
    return parse_definitions_document(read_definitions_file(path, label), label), shown


def load_settings(env: Mapping[str, str], app_root: Path = APP_ROOT) -> Settings:
    """The settings in `env`; the definitions file is looked for in `app_root` (tests pass their own)."""
    definitions, definitions_from = load_definitions(env, app_root)
    if definitions_from is None:
        log.warning(
            "no export definitions: neither EXPORT_DEFINITIONS nor %s is there; the app starts and runs no export",
            DEFAULT_DEFINITIONS_FILE,
        )
    connection_string = _get(env, "SOURCE_STORAGE_CONNECTION_STRING")
    account_url = _https_url(env, "SOURCE_STORAGE_ACCOUNT_URL")
    if not connection_string and not account_url:
        raise SettingsError("SOURCE_STORAGE_CONNECTION_STRING or SOURCE_STORAGE_ACCOUNT_URL is required")
    key_vault_url = _https_url(env, "KEY_VAULT_URL")
    local_key = _get(env, "SENDGRID_API_KEY")
    if not key_vault_url and not local_key:
        raise SettingsError("KEY_VAULT_URL is required (SENDGRID_API_KEY only for local development)")
    # http:// is allowed for the SendGrid root only so a local sandbox can stand in for it: never
    # over a network, where the API key would travel in clear.
    base_url = _https_url(env, "SENDGRID_API_BASE_URL", allow_loopback_http=True) or DEFAULT_SENDGRID_BASE_URL
    state_connection_string = _get(env, "STATE_STORAGE_CONNECTION_STRING")
    state_account_url = _https_url(env, "STATE_STORAGE_ACCOUNT_URL")
    if not state_connection_string and not state_account_url:  # local use: one account for both
        state_connection_string, state_account_url = connection_string, account_url
    return Settings(
        source_container=_container_name(env, "SOURCE_CONTAINER", None),
        definitions=definitions,
        definitions_from=definitions_from,
        source_connection_string=connection_string,
        source_account_url=account_url,
        state_connection_string=state_connection_string,
        state_account_url=state_account_url,
        state_container=_container_name(env, "STATE_CONTAINER", DEFAULT_STATE_CONTAINER),
        key_vault_url=key_vault_url,
        api_key_secret_name=_get(env, "SENDGRID_API_KEY_SECRET_NAME") or DEFAULT_SECRET_NAME,
        # Honoured only without a vault: a key in app settings is for local development.
        local_api_key=None if key_vault_url else local_key,
        sendgrid_base_url=base_url,
        sendgrid_eu_base_url=_https_url(env, "SENDGRID_EU_API_BASE_URL", allow_loopback_http=True)
        or DEFAULT_SENDGRID_EU_BASE_URL,
        schedule=_get(env, "EXPORT_SCHEDULE") or DEFAULT_SCHEDULE,
        run_time_limit_seconds=_whole_number(env, "RUN_TIME_LIMIT_SECONDS", DEFAULT_RUN_TIME_LIMIT, 10, 24 * 3600),
        job_wait_seconds=_whole_number(env, "JOB_WAIT_SECONDS", DEFAULT_JOB_WAIT, 0, 7 * 24 * 3600),
        run_lease_seconds=_whole_number(env, "RUN_LEASE_SECONDS", DEFAULT_RUN_LEASE, 15, 60),
        # SendGrid's cap is 30,000; smaller requests are gentler on a shared rate limit.
        max_contacts_per_request=_whole_number(env, "SENDGRID_MAX_CONTACTS_PER_REQUEST", 30_000, 1, 30_000),
        run_queue=_queue_name(env, "RUN_QUEUE", DEFAULT_RUN_QUEUE),
        queue_service_url=_https_url(env, "AzureWebJobsStorage__queueServiceUri"),
        confirm_interval_seconds=_whole_number(env, "CONFIRM_INTERVAL_SECONDS", DEFAULT_CONFIRM_INTERVAL, 1, 900),
        snapshot_settle_seconds=_whole_number(env, "SNAPSHOT_SETTLE_SECONDS", DEFAULT_SNAPSHOT_SETTLE, 0, 3600),
    )
