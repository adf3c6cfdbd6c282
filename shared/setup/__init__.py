"""Setting up an export without guesswork: the answers of GET /api/sources (the Customer
Insights exports in the source container), GET /api/sendgrid/lists and /fields (what a SendGrid
account has) and POST /api/preview (a draft definition completed with suggestions, its problems,
a masked sample of the contacts it would send and the dry-run plan; nothing is written).

A functional core and a thin shell: `matching` (columns, fields and lists by name; did you
mean), `masking` (sample values), `inputs` (the requests' checks) and `draft` (completing a
draft) are pure; `accounts` (which SendGrid account a request reads), `sources` and `preview`
do the I/O through the existing clients (shared.source, shared.sendgrid, the run's dry run).

May import `run` and what lies below it (services, source, state, contacts, sendgrid, the
contracts); `api` imports it. Never the engine.
"""
