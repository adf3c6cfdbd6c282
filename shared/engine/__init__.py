"""The run engine: decides *when* work happens. `handlers` takes run-queue messages (`run`,
`continue`, `confirm`, Event Grid events) and queues runs; `messages` parses and validates what a
message says; `liveness` reads and settles queued/running reports whose run can no longer be
going on. The queue client itself is `shared.state.queue`.

May import `run` and everything below it; never the composition root (`shared.api`).
"""
