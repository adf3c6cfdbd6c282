"""Export definitions: the public JSON contract, parsed and validated.

A definition that fails validation is still listed (so an operator can see what is wrong with
it), but it never runs: `parse_definition` raises `ExportError("invalid_definition")`.

The fields of `ExportDefinition` are the one place a definition is declared: the keys the parser
accepts, and (from each field's metadata: description and value schema) the JSON Schema of a
definitions file, committed as schema/exports.schema.json (`python -m shared schema --write`;
tests/unit/test_schema.py fails when it drifts, or when schema and parser disagree on a case).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, get_args

from shared.errors import ExportError

# SendGrid reserved fields an export may map, with their max lengths from the ContactRequest
# schema of the official OpenAPI description (tsg_mc_contacts_v3.json). None: no limit given.
RESERVED_FIELD_MAX_LENGTH: dict[str, int | None] = {
    "email": 254,
    "first_name": 50,
    "last_name": 50,
    "country": 50,
    "state_province_region": 50,
    "city": 60,
    "postal_code": None,
    "address_line_1": 100,
    "address_line_2": 100,
    "external_id": 254,
}

DEFAULT_MAX_PROFILES = 100_000
DEFAULT_MAX_REMOVAL_FRACTION = 0.2
SyncMode = Literal["upsert", "mirror"]
Overlength = Literal["truncate", "reject"]
OVERLENGTH_POLICIES: tuple[Overlength, ...] = get_args(Overlength)
SYNC_MODES: tuple[SyncMode, ...] = get_args(SyncMode)
# Which SendGrid API a definition's account lives behind: "eu" is the EU regional subuser
# endpoint https://api.eu.sendgrid.com (the root itself is a setting, see settings.py).
Region = Literal["global", "eu"]
REGIONS: tuple[Region, ...] = get_args(Region)
# Key Vault secret names: 1-127 characters of letters, digits and '-'.
# Source: https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates#objects-identifiers-and-versioning
_SECRET_NAME = r"[0-9A-Za-z-]{1,127}"
_SECRET_NAME_RE = re.compile(_SECRET_NAME)
# Matched whole (fullmatch): with `$`, "vip\n" passed and split every log line it appeared in.
_NAME = r"[a-z0-9][a-z0-9_-]{0,62}"
_NAME_RE = re.compile(_NAME)
# A SendGrid list id in its one spelling: str(uuid.UUID(text)) == text (checked so in parse_definition).
_LIST_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Where the JSON Schema of a definitions file lives in the repository (`python -m shared schema --write`).
SCHEMA_PATH = "schema/exports.schema.json"


def _whole(pattern: str) -> str:
    """`pattern` matched whole, in JSON Schema's `pattern` (ECMA 262, and Python's re.search,
    which jsonschema uses): `$` would let a trailing line break through in Python, so the end is a
    lookahead both read the same way."""
    return f"^{pattern}(?![\\s\\S])"


_TEXT = {"type": "string", "pattern": r"\S"}  # a string with something besides white space


def _doc(description: str, schema: dict[str, Any], *, optional: bool = False) -> dict[str, Any]:
    """A field's metadata: its description and the JSON Schema of its value (`definition_schema`
    builds the schema from them). `optional`: not required in JSON though the dataclass has no
    default (the parser fills it in)."""
    return {"description": description, "schema": schema, "optional": optional}


def is_export_name(name: object) -> bool:
    """1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit; nothing else."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


@dataclass(frozen=True)
class ExportDefinition:
    """One export, as its JSON says it. Each field's metadata holds its description and the JSON
    Schema of its value: `definitions_file_schema` builds schema/exports.schema.json from them."""

    name: str = field(
        metadata=_doc(
            "The export's name: 1-63 of a-z, 0-9, '_' and '-', starting with a letter or digit. "
            "It names the export in URLs (/api/exports/{name}) and in the state container's blobs.",
            {"type": "string", "pattern": _whole(_NAME)},
        )
    )
    display_name: str = field(
        metadata=_doc(
            "A label for people; it changes nothing a run sends. Default: the name.",
            {"type": ["string", "null"], "pattern": _TEXT["pattern"]},
            optional=True,
        )
    )
    source_folder: str = field(
        metadata=_doc(
            "The blob prefix, in SOURCE_CONTAINER, of the Customer Insights export: the folder holding "
            "model.json (or a *.manifest.cdm.json), e.g. CustomerInsights_<instance>/SendGridExport.",
            _TEXT,
        )
    )
    segment: str = field(metadata=_doc("The entity (table) of the export that holds the segment's profiles.", _TEXT))
    list_ids: tuple[str, ...] = field(
        metadata=_doc(
            "The SendGrid contact lists the contacts are added to: list ids as SendGrid writes them "
            "(lower-case UUIDs), each once. They are checked to exist before anything is sent.",
            {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "pattern": _whole(_LIST_ID)}},
        )
    )
    privacy_consent: bool = field(
        metadata=_doc(
            "Must be true: you agree to send personal data out of the compliance boundary to SendGrid. "
            "An export without it never runs.",
            {"type": "boolean", "const": True},
        )
    )
    mapping: dict[str, str] = field(
        metadata=_doc(
            "SendGrid reserved field -> the column holding it. 'email' is required. Column names match "
            "exactly, or case-insensitively when that is unambiguous.",
            {
                "type": "object",
                "required": ["email"],
                "properties": {
                    name: {
                        **_TEXT,
                        "description": f"The column holding {name}"
                        + (f" (SendGrid keeps at most {length} characters)." if length else "."),
                    }
                    for name, length in RESERVED_FIELD_MAX_LENGTH.items()
                },
                "additionalProperties": False,
            },
        )
    )
    custom_fields: dict[str, str] = field(
        default_factory=dict,
        metadata=_doc(
            "SendGrid custom field name -> the column holding it. A name SendGrid does not know stops "
            "the run before anything is sent.",
            {
                "type": "object",
                "propertyNames": {"not": {"enum": list(RESERVED_FIELD_MAX_LENGTH)}},
                "additionalProperties": _TEXT,
            },
        ),
    )
    max_profiles: int = field(
        default=DEFAULT_MAX_PROFILES,
        metadata=_doc(
            "More valid profiles than this refuses the run before anything is sent (the connector's limit by default).",
            {"type": "integer", "minimum": 1},
        ),
    )
    enabled: bool = field(
        default=True,
        metadata=_doc(
            "false: the timer and new exports skip it; it can still run over HTTP and from the CLI.", {"type": "boolean"}
        ),
    )
    on_overlength: Overlength = field(
        default="truncate",
        metadata=_doc(
            "What happens to a row whose reserved field is longer than SendGrid allows: it is truncated, or rejected.",
            {"type": "string", "enum": list(OVERLENGTH_POLICIES)},
        ),
    )
    sync_mode: SyncMode = field(
        default="upsert",
        metadata=_doc(
            "upsert: add and update contacts only. mirror: also unlink from the lists the contacts "
            "this export put there that left the segment.",
            {"type": "string", "enum": list(SYNC_MODES)},
        ),
    )
    max_removal_fraction: float = field(
        default=DEFAULT_MAX_REMOVAL_FRACTION,
        metadata=_doc(
            "Mirror mode: a run that would unlink more than this share (0 to 1) of the export's "
            "contacts is refused unless it is confirmed.",
            {"type": "number", "minimum": 0, "maximum": 1},
        ),
    )
    # The SendGrid account: its API key's secret name (None: SENDGRID_API_KEY_SECRET_NAME) and region.
    sendgrid_api_key_secret: str | None = field(
        default=None,
        metadata=_doc(
            "The Key Vault secret holding this export's SendGrid API key (another account): 1-127 "
            "letters, digits or '-'. null: the secret SENDGRID_API_KEY_SECRET_NAME names.",
            {"type": ["string", "null"], "pattern": _whole(_SECRET_NAME)},
        ),
    )
    sendgrid_region: Region = field(
        default="global",
        metadata=_doc(
            "global, or eu for an EU regional subuser (its API root is SENDGRID_EU_API_BASE_URL).",
            {"type": "string", "enum": list(REGIONS)},
        ),
    )

    def to_public_dict(self) -> dict[str, Any]:
        """The definition as JSON, one key per field; it holds no secrets (the API key lives in
        Key Vault). Tuples become lists and dicts are copied, so the result is plain JSON."""
        public: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            public[item.name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value
        return public

    def fingerprint(self) -> str:
        """A stable hash of everything that changes what a run sends.

        The account counts: a checkpoint made for one account is never resumed for another (its
        first half was sent elsewhere). Its fields enter the hash only when they are not the
        defaults, so fingerprints of definitions that name no account stay what they were. A
        full resend after an account change needs nothing more: list ids belong to one account,
        so another account means other `list_ids`, and those are part of every delivered hash."""
        public = self.to_public_dict()
        del public["enabled"], public["display_name"]  # these change nothing a run sends
        if public["sendgrid_api_key_secret"] is None:
            del public["sendgrid_api_key_secret"]
        if public["sendgrid_region"] == "global":
            del public["sendgrid_region"]
        text = json.dumps(public, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# The JSON contract's keys are the dataclass's fields: named once, above.
_ALLOWED_KEYS = frozenset(item.name for item in fields(ExportDefinition))


def _fail(name: str, message: str) -> ExportError:
    return ExportError("invalid_definition", f"export '{name}': {message}")


def _string(raw: dict[str, Any], key: str, name: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, f"'{key}' must be a non-empty string")
    return value.strip()


def _string_map(raw: dict[str, Any], key: str, name: str) -> dict[str, str]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise _fail(name, f"'{key}' must be an object of field name to column name")
    for field_name, column in value.items():
        if not isinstance(column, str) or not column.strip():
            raise _fail(name, f"'{key}.{field_name}' must name a column (a non-empty string)")
    return {k: v.strip() for k, v in value.items()}


def definition_name(raw: object, index: int, where: str | None = None) -> str:
    """The name of a raw definition, or an error that says which entry lacks a usable one: `where`
    names the entry (default: EXPORT_DEFINITIONS[index])."""
    where = where or f"EXPORT_DEFINITIONS[{index}]"
    if not isinstance(raw, dict):
        raise ExportError("invalid_definition", f"{where} must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not is_export_name(name):
        raise ExportError("invalid_definition", f"{where}.name must be 1-63 characters of a-z, 0-9, '_' or '-'")
    return name


def parse_definition(raw: dict[str, Any]) -> ExportDefinition:
    """Validate one definition; the error names the first bad field."""
    name = definition_name(raw, 0, "the definition")
    unknown = sorted(set(raw) - _ALLOWED_KEYS)
    if unknown:
        raise _fail(name, f"unknown field(s) {', '.join(unknown)}")

    consent = raw.get("privacy_consent", False)
    if consent is not True:
        # The connector's explicit "I agree": personal data leaves the compliance boundary.
        raise ExportError(
            "consent_required",
            f"export '{name}': 'privacy_consent' must be true to send personal data to SendGrid",
        )

    list_ids = raw.get("list_ids")
    if not isinstance(list_ids, list) or not list_ids:
        raise _fail(name, "'list_ids' must be a non-empty array of SendGrid list ids")
    for list_id in list_ids:
        if not isinstance(list_id, str):
            raise _fail(name, "'list_ids' must hold strings")
        # Canonical form only (lower-case, hyphenated, no braces or "urn:uuid:"), as SendGrid
        # writes list ids: the ids are compared and stored as text, so one list has one spelling.
        try:
            canonical = str(uuid.UUID(list_id)) == list_id
        except ValueError:
            canonical = False
        if not canonical:
            raise _fail(
                name,
                f"'list_ids' holds {list_id[:60]!r}, which is not a SendGrid list id "
                "(a lower-case UUID such as 0f9c3a4e-1b2d-4c5e-8f70-123456789abc)",
            )
    if len(set(list_ids)) != len(list_ids):
        raise _fail(name, "'list_ids' holds the same id twice")

    mapping = _string_map(raw, "mapping", name)
    if "email" not in mapping:
        raise _fail(name, "'mapping.email' is required: it names the column holding the email")
    unknown_fields = sorted(set(mapping) - set(RESERVED_FIELD_MAX_LENGTH))
    if unknown_fields:
        raise _fail(
            name,
            f"'mapping' has unknown SendGrid field(s) {', '.join(unknown_fields)}; "
            f"allowed: {', '.join(RESERVED_FIELD_MAX_LENGTH)} (use 'custom_fields' for others)",
        )
    custom_fields = _string_map(raw, "custom_fields", name)
    clashes = sorted(set(custom_fields) & set(RESERVED_FIELD_MAX_LENGTH))
    if clashes:
        raise _fail(name, f"'custom_fields' uses reserved field name(s) {', '.join(clashes)}")

    max_profiles = raw.get("max_profiles", DEFAULT_MAX_PROFILES)
    if isinstance(max_profiles, float) and max_profiles.is_integer():  # 1e5 and 100000.0 are JSON integers too
        max_profiles = int(max_profiles)
    if isinstance(max_profiles, bool) or not isinstance(max_profiles, int) or max_profiles < 1:
        raise _fail(name, "'max_profiles' must be a positive whole number")

    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(name, "'enabled' must be true or false")

    on_overlength = raw.get("on_overlength", "truncate")
    if on_overlength not in OVERLENGTH_POLICIES:
        raise _fail(name, "'on_overlength' must be 'truncate' or 'reject'")

    sync_mode = raw.get("sync_mode", "upsert")
    if sync_mode not in SYNC_MODES:
        raise _fail(name, "'sync_mode' must be 'upsert' or 'mirror'")
    fraction = raw.get("max_removal_fraction", DEFAULT_MAX_REMOVAL_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise _fail(name, "'max_removal_fraction' must be a number from 0 to 1")

    secret = raw.get("sendgrid_api_key_secret")
    if secret is not None and (not isinstance(secret, str) or not _SECRET_NAME_RE.fullmatch(secret)):
        raise _fail(name, "'sendgrid_api_key_secret' must be a Key Vault secret name (1-127 letters, digits or '-')")
    region = raw.get("sendgrid_region", "global")
    if region not in REGIONS:
        raise _fail(name, "'sendgrid_region' must be 'global' or 'eu'")

    source_folder = _string(raw, "source_folder", name).strip("/")
    return ExportDefinition(
        name=name,
        display_name=_string(raw, "display_name", name, required=False) or name,
        source_folder=source_folder,
        segment=_string(raw, "segment", name),
        list_ids=tuple(list_ids),
        privacy_consent=True,
        mapping=mapping,
        custom_fields=custom_fields,
        max_profiles=max_profiles,
        enabled=enabled,
        on_overlength=on_overlength,
        sync_mode=sync_mode,
        max_removal_fraction=float(fraction),
        sendgrid_api_key_secret=secret,
        sendgrid_region=region,
    )


# -- the JSON Schema of a definitions file, built from the fields above ------------------------
SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"  # the draft editors support most widely


def definition_schema() -> dict[str, Any]:
    """The JSON Schema of one definition: every field of ExportDefinition with its type, default
    and description (its metadata), the required ones, and no other key."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for item in fields(ExportDefinition):
        meta = item.metadata
        entry: dict[str, Any] = {"description": meta["description"], **meta["schema"]}
        if item.default is not MISSING:
            entry["default"] = item.default
        elif item.default_factory is not MISSING:
            entry["default"] = item.default_factory()
        elif not meta["optional"]:
            required.append(item.name)
        properties[item.name] = entry
    return {
        "title": "Export definition",
        "description": "One export of a Customer Insights segment to SendGrid contact lists (README: Export definitions).",
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def definitions_file_schema() -> dict[str, Any]:
    """The JSON Schema of a definitions file (exports.json) and of the EXPORT_DEFINITIONS setting:
    {"$schema": ..., "exports": [definition, ...]}, or a bare array of definitions. Export names
    are unique within a file; JSON Schema cannot say so, the app checks it."""
    exports = {
        "type": "array",
        "description": "The export definitions; each name once.",
        "items": {"$ref": "#/definitions/definition"},
    }
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "ci-sendgrid-export definitions",
        "description": (
            "Export definitions of ci-sendgrid-export: the file EXPORT_DEFINITIONS_FILE names (exports.json beside "
            "host.json), or the EXPORT_DEFINITIONS setting. Generated from shared/definitions.py by "
            f"`python -m shared schema --write`; do not edit {SCHEMA_PATH} by hand."
        ),
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "$schema": {"type": "string", "description": f"For editors: ./{SCHEMA_PATH}. The app ignores it."},
                    "exports": exports,
                },
                "required": ["exports"],
                "additionalProperties": False,
            },
            exports,
        ],
        "definitions": {"definition": definition_schema()},
    }


def schema_text() -> str:
    """The schema as it is committed at SCHEMA_PATH (a test fails when the two differ)."""
    return json.dumps(definitions_file_schema(), indent=2, ensure_ascii=False) + "\n"
