"""Common Data Model folder metadata, as pure functions (no I/O). Partitions are read in blob.py.

What the folder looks like (see docs/reference.md):
- `model.json`: entities[] {name, attributes[] {name}, partitions[] {location, fileFormatSettings,
  cdm:traits}}. CsvFormatSettings defaults: columnHeaders false (no header row), delimiter ",",
  quoteStyle QuoteStyle.Csv, encoding UTF-8. `columnHeaders` may be the string "true"/"false".
  When a partition has both fileFormatSettings and an `is.partition.format.CSV` trait, the trait's
  arguments win, as in the CDM SDK (its test TestLoadingCsvPartitionTraits expects that).
- `*.manifest.cdm.json`: entities[] {entityName, entityPath | entitySchema, dataPartitions[]
  {location, exhibitsTraits}}; the columns come from the entity document's `hasAttributes`.
- Partition locations are often absolute URLs of another storage account (with ":443" and
  "?snapshot=") or even Windows paths; `resolve_location` maps them into the folder being read.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import ExportError

# Partition encodings we read (Python codec names). CDM's CsvFormatSettings default is UTF-8
# (learn.microsoft.com/common-data-model/model-json, and docs/reference.md); the CDM
# SDK's own samples declare "ASCII" (cdm-sdk-modeljson-edgecases); UTF-16 and Latin-1/Windows-1252
# are what .NET writers (Customer Insights, Power Query dataflows) name when not UTF-8. Anything
# else (utf-7, rot13, zlib, ...) is refused: such codecs can yield lone surrogates or raise while
# reading instead of marking just the bad bytes.
ALLOWED_ENCODINGS = frozenset({"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "iso8859-1", "cp1252", "ascii"})

CSV_TRAIT = "is.partition.format.CSV"


@dataclass(frozen=True)
class CsvFormat:
    header: bool = False
    delimiter: str = ","
    quoting: bool = True
    encoding: str = "utf-8-sig"


@dataclass(frozen=True)
class PartitionRef:
    name: str
    location: str
    fmt: CsvFormat


@dataclass(frozen=True)
class EntitySchema:
    name: str
    columns: tuple[str, ...]
    partitions: tuple[PartitionRef, ...]


@dataclass(frozen=True)
class ManifestEntity:
    """A manifest entry: its partitions, and where its columns are defined."""

    name: str
    document_path: str
    definition_name: str
    partitions: tuple[PartitionRef, ...]


def invalid(message: str) -> ExportError:
    return ExportError("source_invalid", message)


def load_json(data: bytes, what: str) -> Any:
    try:
        # utf-8-sig: Customer Insights and the CDM SDK sometimes write a BOM before the JSON.
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"{what} is not valid JSON: {exc}") from None


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid(f"{what} must be true or false, not {value!r}")


def _codec(name: str) -> str:
    try:
        codec = codecs.lookup(name.strip().replace("_", "-")).name
    except LookupError:
        codec = ""
    if codec not in ALLOWED_ENCODINGS:
        raise invalid(f"partition encoding {name[:40]!r} is not supported (UTF-8, UTF-16, Latin-1, Windows-1252 or ASCII)")
    # A UTF-8 partition may start with a BOM; utf-8-sig drops it and reads plain UTF-8 alike.
    return "utf-8-sig" if codec == "utf-8" else codec


def _apply_settings(fmt: CsvFormat, settings: dict[str, Any], what: str) -> CsvFormat:
    header, delimiter, quoting, encoding = fmt.header, fmt.delimiter, fmt.quoting, fmt.encoding
    if "columnHeaders" in settings:
        header = _as_bool(settings["columnHeaders"], f"{what} columnHeaders")
    if "delimiter" in settings:
        delimiter = str(settings["delimiter"])
        if len(delimiter) != 1:
            raise invalid(f"{what} delimiter must be one character, not {delimiter!r}")
    if "quoteStyle" in settings:
        style = str(settings["quoteStyle"])
        if style not in ("QuoteStyle.Csv", "QuoteStyle.None"):
            raise invalid(f"{what} quoteStyle '{style}' is not supported")
        quoting = style == "QuoteStyle.Csv"
    if "encoding" in settings:
        encoding = _codec(str(settings["encoding"]))
    return CsvFormat(header, delimiter, quoting, encoding)


def _trait_arguments(traits: Any) -> dict[str, Any] | None:
    """Arguments of the CSV format trait, as a dict, or None when there is no such trait."""
    if not isinstance(traits, list):
        return None
    for trait in traits:
        if isinstance(trait, dict) and trait.get("traitReference") == CSV_TRAIT:
            arguments: dict[str, Any] = {}
            for argument in trait.get("arguments") or []:
                if isinstance(argument, dict) and "name" in argument:
                    arguments[str(argument["name"])] = argument.get("value")
            return arguments
    return None


def partition_format(file_format_settings: Any, traits: Any, what: str) -> CsvFormat:
    fmt = CsvFormat()
    if isinstance(file_format_settings, dict):
        kind = file_format_settings.get("$type", "CsvFormatSettings")
        if kind != "CsvFormatSettings":
            raise invalid(f"{what} has format '{kind}'; only CSV partitions are supported")
        fmt = _apply_settings(fmt, file_format_settings, what)
    arguments = _trait_arguments(traits)
    if arguments:
        fmt = _apply_settings(fmt, arguments, what)
    return fmt


def _find_entity(entities: Any, key: str, segment: str, what: str) -> dict[str, Any]:
    if not isinstance(entities, list):
        raise invalid(f"{what} has no 'entities' array")
    names = [e.get(key) for e in entities if isinstance(e, dict)]
    for entity in entities:
        if isinstance(entity, dict) and entity.get(key) == segment:
            return entity
    raise ExportError(
        "source_not_found",
        f"segment '{segment}' is not in {what} (it has: {', '.join(map(str, names)) or 'none'})",
    )


def _partition_refs(raw: Any, key_traits: str, what: str) -> tuple[PartitionRef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid(f"{what} partitions must be an array")
    refs = []
    for index, partition in enumerate(raw):
        label = f"{what} partition {index + 1}"
        if not isinstance(partition, dict) or not isinstance(partition.get("location"), str):
            raise invalid(f"{label} has no location")
        fmt = partition_format(partition.get("fileFormatSettings"), partition.get(key_traits), label)
        name = str(partition.get("name") or partition["location"].rsplit("/", 1)[-1])
        # Names go into tab-separated work files and the rejects CSV: no tabs or line breaks.
        name = " ".join(name.replace("\t", " ").splitlines())
        refs.append(PartitionRef(name=name, location=partition["location"], fmt=fmt))
    return tuple(refs)


def _entities_of(data: bytes, what: str) -> Any:
    """The `entities` of a model.json or manifest (checked by `_find_entity` or `metadata_entities`)."""
    document = load_json(data, what)
    if not isinstance(document, dict):
        raise invalid(f"{what} must hold a JSON object")
    return document.get("entities")


def parse_model_json(data: bytes, segment: str) -> EntitySchema:
    entity = _find_entity(_entities_of(data, "model.json"), "name", segment, "model.json")
    return model_entity(entity, segment)


def model_entity(entity: dict[str, Any], segment: str) -> EntitySchema:
    """One entry of model.json's `entities` (named `segment`): its columns and partitions."""
    attributes = entity.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise invalid(f"model.json entity '{segment}' has no attributes")
    columns = []
    for attribute in attributes:
        if not isinstance(attribute, dict) or not isinstance(attribute.get("name"), str):
            raise invalid(f"model.json entity '{segment}' has an attribute without a name")
        columns.append(attribute["name"])
    partitions = _partition_refs(entity.get("partitions"), "cdm:traits", f"model.json '{segment}'")
    return EntitySchema(segment, tuple(columns), partitions)


def _strip_corpus_prefix(path: str) -> str:
    # Manifests may say "local:/Entity.cdm.json/Entity" (a corpus path with an adapter moniker).
    head, sep, tail = path.partition(":/")
    if sep and "/" not in head and len(head) > 1:
        return tail
    return path


def parse_manifest(data: bytes, segment: str, manifest_name: str) -> ManifestEntity:
    entity = _find_entity(_entities_of(data, manifest_name), "entityName", segment, manifest_name)
    return manifest_entity(entity, segment, manifest_name)


def manifest_entity(entity: dict[str, Any], segment: str, manifest_name: str) -> ManifestEntity:
    """One entry of a manifest's `entities` (named `segment`): its document and partitions."""
    schema_path = entity.get("entityPath") or entity.get("entitySchema")
    if not isinstance(schema_path, str) or "/" not in schema_path:
        raise invalid(f"{manifest_name} entity '{segment}' has no entityPath")
    document_path, _, definition = _strip_corpus_prefix(schema_path).lstrip("/").rpartition("/")
    partitions = _partition_refs(entity.get("dataPartitions"), "exhibitsTraits", f"{manifest_name} '{segment}'")
    return ManifestEntity(segment, document_path, definition, partitions)


def parse_entity_document(data: bytes, definition: str, document_name: str) -> tuple[str, ...]:
    document = load_json(data, document_name)
    definitions = document.get("definitions") if isinstance(document, dict) else None
    if not isinstance(definitions, list):
        raise invalid(f"{document_name} has no 'definitions'")
    for entry in definitions:
        if isinstance(entry, dict) and entry.get("entityName") == definition:
            names = []
            for attribute in entry.get("hasAttributes") or []:
                if not isinstance(attribute, dict) or not isinstance(attribute.get("name"), str):
                    raise invalid(
                        f"{document_name}: entity '{definition}' is not resolved (its attributes must be a flat list with names)"
                    )
                names.append(attribute["name"])
            if not names:
                raise invalid(f"{document_name}: entity '{definition}' has no attributes")
            return tuple(names)
    raise invalid(f"{document_name} does not define entity '{definition}'")


def location_segments(location: str) -> list[str]:
    """The path parts of a partition location, whatever form it takes."""
    text = location.strip()
    if "://" in text:
        text = urlsplit(text).path  # drops scheme, host, port and ?snapshot=...
    else:
        text = _strip_corpus_prefix(text.split("?", 1)[0])
    parts = [unquote(p) for p in text.replace("\\", "/").split("/")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive, "C:"
        parts = parts[1:]
    return [p for p in parts if p not in ("", ".")]


def resolve_location(location: str, existing: Collection[str]) -> str | None:
    """The blob (relative to the folder) that a location points at, or None.

    The longest tail of the location's path that names an existing blob wins, so an absolute
    URL of another account or a Windows path still finds the file copied into this folder.
    """
    parts = location_segments(location)
    for start in range(len(parts)):
        candidate = "/".join(parts[start:])
        if candidate in existing:
            return candidate
    return None


# -- describing a folder (GET /api/sources): every entity, and each column's declared data type --
def metadata_entities(data: bytes, what: str) -> list[Any]:
    """The entries of a model.json's or manifest's `entities`, as they are (each entry is read by
    `model_entity` or `manifest_entity`, under the name `entity_name` gives it)."""
    entities = _entities_of(data, what)
    if not isinstance(entities, list):
        raise invalid(f"{what} has no 'entities' array")
    return entities


def entity_name(entry: Any, manifest: bool) -> str | None:
    """An entry's name (`entityName` in a manifest, `name` in model.json), or None."""
    name = entry.get("entityName" if manifest else "name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) and name else None


_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,39}")


def data_type(attribute: Any) -> str:
    """An attribute's CDM data type as declared: `dataType` (model.json; in an entity document a
    name or {"dataTypeReference": name}), else `dataFormat` (resolved entity documents, e.g.
    "Int64"); "unknown" when it declares none (or something that is not a type name)."""
    if not isinstance(attribute, dict):
        return "unknown"
    declared = attribute.get("dataType")
    if isinstance(declared, dict):
        declared = declared.get("dataTypeReference")
    if not isinstance(declared, str):
        declared = attribute.get("dataFormat")
    return declared if isinstance(declared, str) and _TYPE_NAME.fullmatch(declared) else "unknown"


def model_entity_types(entity: dict[str, Any]) -> tuple[str, ...]:
    """The data types of a model.json entity's columns, in column order (see `model_entity`)."""
    attributes = entity.get("attributes")
    return tuple(data_type(a) for a in attributes) if isinstance(attributes, list) else ()


def entity_document_types(data: bytes, definition: str, document_name: str) -> tuple[str, ...]:
    """The data types of an entity document's columns, in the order `parse_entity_document` gives
    the columns (call that first: it refuses a document that does not define the entity)."""
    document = load_json(data, document_name)
    definitions = document.get("definitions") if isinstance(document, dict) else None
    for entry in definitions if isinstance(definitions, list) else []:
        if isinstance(entry, dict) and entry.get("entityName") == definition:
            return tuple(data_type(a) for a in entry.get("hasAttributes") or [])
    return ()
