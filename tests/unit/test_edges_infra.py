"""The poison-message alert looks for the poison queue of the run queue infra deploys: its name
comes from the runQueueName parameter, never a literal that a different RUN_QUEUE would miss."""

from __future__ import annotations

from typing import Any

from bicep import INFRA, parsed

ALERTS = "modules/alerts.bicep"
POISON_QUERY = "poison-message.kql"


def poison_rule() -> dict[str, Any]:
    (rule,) = [r for r in parsed(ALERTS)["variables"]["rules"]["value"] if r["name"] == "export-poison-message"]
    return dict(rule)


def rendered_query(queue: str) -> str:
    """The poison rule's query as Bicep makes it for `queue`: replace(loadTextContent(...), old, new)."""
    function = poison_rule()["query"]["function"]
    assert function["type"] == "replace"
    parameters = function["parameters"]
    loaded = parameters["original_string"]["function"]
    assert loaded["type"] == "load_text_content"
    assert loaded["parameters"]["file_path"] == f"../alerts/{POISON_QUERY}"
    new = parameters["new_string"]
    if isinstance(new, dict):  # string(runQueueName)
        assert new["function"]["type"] == "string"
        new = new["function"]["parameters"]["value_to_convert"]
    assert new == "runQueueName"
    return (INFRA / "alerts" / POISON_QUERY).read_text().replace(parameters["old_string"], queue)


def test_the_poison_alert_names_the_poison_queue_of_the_deployed_run_queue() -> None:
    assert parsed(ALERTS)["parameters"]["runQueueName"]["type"] == "string"
    main = parsed("main.bicep")
    assert main["modules"]["alerts"]["config"]["params"]["runQueueName"] == "runQueueName"
    default = main["parameters"]["runQueueName"]["default"]
    assert f"Moving message to queue '{default}-poison'" in rendered_query(default)
    other = rendered_query("runs-blue")
    assert "Moving message to queue 'runs-blue-poison'" in other and "export-runs" not in other
    assert "export-runs" not in (INFRA / "alerts" / POISON_QUERY).read_text()
    assert poison_rule()["title"] == "A message reached the poison queue ${runQueueName}-poison"
