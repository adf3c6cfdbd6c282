"""ci-sendgrid-export: export Customer Insights segments from Blob Storage to SendGrid lists.

All logic lives in this package; the function folders (`export_*/`) only translate host
requests into calls. Data flows one way, top to bottom; a package imports only what lies below
it (the `layers` contract in pyproject.toml, checked by `make lint`):

    api        routes -> calls, errors -> JSON; the CLI; the composition root (builds from settings)
    engine     *when* work happens: run-queue messages, liveness of queued/running runs
    run        *what* a run does: a straight list of stages, its report and rejects file
    services   the types a run and the engine receive (the services bundle, the app)
    source | state | telemetry
               the I/O edges: Customer Insights' CDM folders in Blob Storage; the app's own
               storage (reports, record, checkpoints, lease, run queue); Application Insights
    contacts | delta
               pure: rows to contacts to request bodies; what changed since the last delivery
    report     the run report, the public contract of a run (and its lifecycle states)
    sendgrid   SendGrid's API: the HTTP client and its keys, and the pure facts of its answers,
               fields and import jobs
    storage    one translation of Azure Storage failures
    settings | definitions | errors
               the contracts: app settings, export definitions, the one error type
"""
