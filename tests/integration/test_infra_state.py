"""infra/ against what the app writes: the lifecycle rules match the state store's own blob names."""

from __future__ import annotations

import io

from azure.storage.blob import BlobServiceClient
from bicep import lifecycle_rules

from shared.state.store import StateStore


def test_the_rejects_rule_matches_where_the_app_writes_rejects(
    blob_service: BlobServiceClient, state_container_name: str
) -> None:
    """The lifecycle prefix (after the container) is the one the app's state store uses."""
    store = StateStore(blob_service.get_container_client(state_container_name))
    name = store.save_rejects("vip", "run-1", io.BytesIO(b"row,reason\r\n"))
    written = [blob.name for blob in blob_service.get_container_client(state_container_name).list_blobs()]
    assert written == [name]
    (prefix,) = lifecycle_rules()["delete-rejects"]["definition"]["filters"]["prefixMatch"]
    assert name.startswith(prefix.removeprefix("${containerName}/"))
