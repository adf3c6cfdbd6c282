"""Pure (but for temporary files): what changed since the last delivery, on sorted streams.
`diff` makes the plan and the record after a run, `lines` is every line format a run writes to
disk (one encoder, one parser each), `extsort` the bounded-memory external sort.

No I/O beyond the run's own temporary files: imports nothing else of the app.
"""
