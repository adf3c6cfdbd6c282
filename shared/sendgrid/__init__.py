"""SendGrid's Marketing Campaigns API as the app uses it. The I/O: `client` (the only module that
speaks HTTP to SendGrid: one session, timeouts, retries, rate limits, upserts, field and list
look-ups), `members` (finding contact ids and unlinking them from a list, composed into the
client) and `keys` (the only module that reads Key Vault). The pure facts: `answers` (what its
answers mean, what may go into its URLs), `pacing` (rate-limit headers), `fields` (custom field
types and codes) and `jobs` (what an import job's status means).

Knows nothing of rows, mapping or runs; may import the contracts only.
"""
