"""The one error type that crosses module boundaries, with the HTTP status it maps to.

Messages never carry profile values or secrets: they name settings, fields, columns and counts.
"""

from __future__ import annotations

# code -> HTTP status used by the API. Codes are part of the public contract.
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "run_in_progress": 409,
    "invalid_definition": 422,
    "consent_required": 422,
    "export_disabled": 422,
    "unknown_column": 422,
    "unknown_custom_field": 422,
    "unknown_list": 422,
    "source_not_found": 422,
    "source_invalid": 422,
    "too_many_profiles": 422,
    "removal_guard": 422,
    "time_limit": 503,  # the run's time limit passed while reading: resumable where it sent anything
    "sendgrid_auth_failed": 502,
    "sendgrid_unavailable": 502,
    "sendgrid_error": 502,
    "keyvault_unavailable": 502,
    "storage_unavailable": 502,
    "internal_error": 500,
}


class ExportError(Exception):
    """A failure with a stable code and a message that is safe to log and return."""

    def __init__(self, code: str, message: str) -> None:
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return STATUS_BY_CODE[self.code]

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
