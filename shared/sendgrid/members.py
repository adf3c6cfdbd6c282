"""Mirror removals through a SendGrid client: find leavers' contact ids, unlink them from a list.
`SendGridClient` holds one `ListMembers` as `client.members`.

Facts (OpenAPI tsg_mc_contacts_v3.json / tsg_mc_lists_v3.json, docs/reference.md):
- POST /v3/marketing/contacts/search/emails {"emails"}: at most 100 addresses of at most 100
  characters; 200 {"result": {email: {"contact"} | {"error"}}}, 404 when none matches, 400 when
  any searched address is invalid (whether the 400 names it is not recorded: named ones are
  dropped, otherwise the batch is halved within a request budget). It also matches
  `alternate_emails`: only a contact whose primary `email` is the searched one is taken.
- POST /v3/marketing/contacts/search {"query": SGQL} (first 50 matches; 408 past 20 s) for the
  addresses search/emails cannot take.
- DELETE /v3/marketing/lists/{id}/contacts?contact_ids=a,b: 202 {"job_id"}; 404 when the list or
  any one id does not exist. POST /v3/marketing/contacts/batch {"ids"} (at most 100) says which
  still exist; a vanished contact is off the list already and never fails the call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ExportError
from shared.sendgrid.answers import (
    BATCH_IDS_MAX,
    SEARCH_EMAIL_MAX_CHARS,
    SEARCH_EMAILS_MAX,
    ContactSearch,
    checked_id,
    id_batches,
    looks_like_id,
    search_refusals,
    sgql_email_query,
)

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

SEARCH_EMAILS_PATH = "/v3/marketing/contacts/search/emails"
SEARCH_PATH = "/v3/marketing/contacts/search"
BATCH_PATH = "/v3/marketing/contacts/batch"
LIST_CONTACTS = "/v3/marketing/lists/{id}/contacts"
# Extra search/emails requests allowed to isolate invalid addresses in one batch of 100 by
# halving, when the 400 does not name them; past it the rest of the batch is unsearchable.
SEARCH_SPLIT_BUDGET = 24
UNLINK_ROUNDS = 3  # DELETE attempts per id batch while contacts vanish between the calls

BAD_ID = "SendGrid answered a contact id that does not look like an id"


class Requester(Protocol):
    """What `ListMembers` needs of the client: its paced, retried requests."""

    def post_json(self, path: str, body: Any, *, expected: tuple[int, ...]) -> requests.Response: ...

    def request(
        self, method: str, path: str, *, expected: tuple[int, ...], endpoint: str | None = None, **kwargs: Any
    ) -> requests.Response: ...


class ListMembers:
    """Finding contacts by email and unlinking them from a list, through the client's requests."""

    def __init__(self, client: Requester) -> None:
        self._client = client

    # -- search ------------------------------------------------------------------------------
    def contact_ids(self, emails: Iterable[str]) -> ContactSearch:
        """Contact ids of the contacts whose primary email is one of `emails` (any number)."""
        search = ContactSearch()
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        direct = [e for e in wanted if len(e) <= SEARCH_EMAIL_MAX_CHARS]
        other = [e for e in wanted if len(e) > SEARCH_EMAIL_MAX_CHARS]
        for start in range(0, len(direct), SEARCH_EMAILS_MAX):
            other += self._search_emails(direct[start : start + SEARCH_EMAILS_MAX], search)
        for email in other:
            self._search_sgql(email, search)
        if search.unsearchable:
            log.warning("%d leaver(s) could not be looked up in SendGrid; they stay on the lists", len(search.unsearchable))
        return search

    def _search_emails(self, batch: list[str], search: ContactSearch) -> list[str]:
        """Look `batch` up with search/emails; the addresses it refuses (for the SGQL search)."""
        refused: list[str] = []
        parts = [batch]
        budget = SEARCH_SPLIT_BUDGET
        while parts:
            part = parts.pop()
            response = self._client.post_json(SEARCH_EMAILS_PATH, {"emails": part}, expected=(200,))
            if response.status_code == 200:
                result = response.json().get("result") or {}
                for email in part:
                    entry = result.get(email) if isinstance(result, dict) else None
                    self._take(email, entry.get("contact") if isinstance(entry, dict) else None, search)
                continue
            if response.status_code == 404:  # none of them exists
                continue
            if response.status_code != 400:
                raise ExportError("sendgrid_error", f"POST {SEARCH_EMAILS_PATH} answered {response.status_code}")
            try:
                named = search_refusals(response.json().get("errors"), part)
            except (ValueError, AttributeError):
                named = set()
            if named:
                refused += [e for e in part if e in named]
                rest = [e for e in part if e not in named]
            elif len(part) == 1:
                refused += part
                rest = []
            elif budget >= 2:
                budget -= 2
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]
                continue
            else:
                for email in part:
                    search.unsearchable[email] = "search/emails refused its batch; not isolated within the request budget"
                continue
            if rest:
                parts.append(rest)
        return refused

    def _search_sgql(self, email: str, search: ContactSearch) -> None:
        query = sgql_email_query(email)
        if query is None:
            search.unsearchable[email] = "the address holds control characters; not searched"
            return
        response = self._client.post_json(SEARCH_PATH, {"query": query}, expected=(200, 408))
        if response.status_code == 200:
            for contact in response.json().get("result") or []:
                if isinstance(contact, dict) and str(contact.get("email", "")).lower() == email:
                    self._take(email, contact, search)
                    return
        elif response.status_code == 400:
            search.unsearchable[email] = "the SGQL search refused the address"
        elif response.status_code == 408:
            search.unsearchable[email] = "the SGQL search timed out"
        elif response.status_code != 404:  # 404: not found
            raise ExportError("sendgrid_error", f"POST {SEARCH_PATH} answered {response.status_code}")

    @staticmethod
    def _take(email: str, contact: Any, search: ContactSearch) -> None:
        """Record `contact` for `email` when its primary email is the one searched."""
        if not isinstance(contact, dict) or str(contact.get("email", "")).lower() != email:
            return  # not found, or found through alternate_emails: another contact's address
        if looks_like_id(contact.get("id")):
            search.found[email] = contact["id"]
        else:
            search.unsearchable[email] = BAD_ID

    # -- unlink ------------------------------------------------------------------------------
    def remove_from_list(self, list_id: str, contact_ids: Iterable[str]) -> list[str]:
        """Unlink contacts from a list (the contacts themselves stay); the removal job ids.
        Contacts that no longer exist are skipped; a list that does not exist is an error."""
        path = LIST_CONTACTS.replace("{id}", checked_id(list_id, "list id"))
        ids = [checked_id(i, "contact id") for i in dict.fromkeys(contact_ids)]
        job_ids: list[str] = []
        for first_batch in id_batches(ids):
            batch = first_batch
            for _ in range(UNLINK_ROUNDS):
                response = self._client.request(
                    "DELETE", path, expected=(202,), endpoint=LIST_CONTACTS, params={"contact_ids": ",".join(batch)}
                )
                if response.status_code == 202:
                    job_ids.append(str(response.json().get("job_id", "")))
                    break
                if response.status_code != 404:
                    raise ExportError("sendgrid_error", f"DELETE {LIST_CONTACTS} answered {response.status_code}")
                existing = self.existing_contacts(batch)
                if len(existing) == len(batch):
                    raise ExportError("sendgrid_error", f"DELETE {LIST_CONTACTS} answered 404: the list does not exist")
                log.info("%d contact(s) to unlink no longer exist in SendGrid; skipped", len(batch) - len(existing))
                batch = [i for i in batch if i in existing]
                if not batch:
                    break
            else:
                raise ExportError("sendgrid_error", f"DELETE {LIST_CONTACTS} kept answering 404")
        return job_ids

    def existing_contacts(self, contact_ids: list[str]) -> set[str]:
        """Which of `contact_ids` still exist (POST /v3/marketing/contacts/batch)."""
        existing: set[str] = set()
        for start in range(0, len(contact_ids), BATCH_IDS_MAX):
            chunk = contact_ids[start : start + BATCH_IDS_MAX]
            response = self._client.post_json(BATCH_PATH, {"ids": chunk}, expected=(200,))
            if response.status_code == 404:  # none of them exists
                continue
            if response.status_code != 200:
                raise ExportError("sendgrid_error", f"POST {BATCH_PATH} answered {response.status_code}")
            wanted = set(chunk)
            existing |= {
                str(c.get("id")) for c in response.json().get("result") or [] if isinstance(c, dict) and c.get("id") in wanted
            }
        return existing
