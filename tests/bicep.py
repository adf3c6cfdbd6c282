"""infra/*.bicep read as data (parsed with pycep: no Bicep compiler can be installed here), for the
infra tests."""

from __future__ import annotations

import json
from functools import cache
from typing import Any, cast

from helpers import ROOT
from pycep import BicepParser

INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


@cache
def parsed(name: str) -> dict[str, Any]:
    # pycep's JSON (its BicepJson TypedDict), read by the tests as plain JSON objects.
    return cast(dict[str, Any], BicepParser().parse(text=(INFRA / name).read_text()))


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


def lifecycle_rules() -> dict[str, dict[str, Any]]:
    (policy,) = resources("modules/state-storage.bicep", "Microsoft.Storage/storageAccounts/managementPolicies")
    assert policy["config"]["name"] == "default"  # the only name Azure accepts for it
    rules = policy["config"]["properties"]["policy"]["rules"]
    return {rule["name"]: rule for rule in rules if rule["enabled"]}
