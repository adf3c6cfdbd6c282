"""The app's own storage: `store` (run reports, rejects files, checkpoints, which runs are
confirming, follow-up requests), `record` (the delivered record's blob), `journal` (what was sent
since the record was stored), `lease` (one run per export at a time) and `queue` (the run queue,
the only module that speaks to Azure Storage Queues).

May import `storage` and the contracts; nothing of the source, SendGrid or the run.
"""
