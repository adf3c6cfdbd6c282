"""Pure: rows to SendGrid contacts and contacts to request bodies. `mapping` maps and validates a
row, `packing` encodes contacts and packs them into `PUT /v3/marketing/contacts` bodies under
both of SendGrid's caps, `dedup` is the run's compact set of emails taken.

No I/O: may import `sendgrid`'s pure modules (fields), the definitions and the errors only.
"""
