"""Import job answers, errors files and which contacts count as applied. Pure."""

from __future__ import annotations

import csv
from pathlib import Path

from shared.sendgrid import jobs
from shared.sendgrid.jobs import JobEntry


def test_status_answers_update_the_report_entry_and_drop_the_signed_link() -> None:
    job: JobEntry = {"job_id": "j1", "contacts": 10, "status": "pending"}
    url = jobs.apply_status(
        job,
        {"status": "errored", "results": {"requested_count": 10, "errored_count": 2, "errors_url": "https://x/errors.csv?sig=s"}},
    )
    assert url == "https://x/errors.csv?sig=s"
    assert job == {
        "job_id": "j1",
        "contacts": 10,
        "status": "errored",
        "failed": 2,
        "results": {"requested_count": 10, "errored_count": 2},
    }
    assert jobs.apply_status(job, {"status": "failed", "results": {}}) is None and job["failed"] == 10
    assert jobs.is_pending({"status": "pending"}) and not jobs.is_pending(job)


def test_errors_files_are_read_leniently() -> None:
    text = "Email Address,Error Message\r\nA@x.io,bad\r\n,skipped\r\nb@x.io\r\n"
    assert jobs.parse_errors_file(text) == [("a@x.io", "bad"), ("b@x.io", "import error")]
    assert jobs.parse_errors_file("id,reason\r\n1,x\r\n") == []  # no contact column: nothing known
    assert jobs.parse_errors_file("") == []


def test_an_errors_file_csv_cannot_read_names_no_contact() -> None:
    # A field over csv's limit (an unterminated quote makes the rest of the file one field) used
    # to raise csv.Error out of the run; which contacts failed is then simply not known.
    unterminated = 'email,error\r\na@x.io,"' + "x" * (csv.field_size_limit() + 1) + "\r\nb@x.io,bad\r\n"
    assert jobs.parse_errors_file(unterminated) == []
    assert jobs.parse_errors_file("email,error\r\na@x.io,b\0ad\r\n") in ([], [("a@x.io", "b\0ad")])


def test_only_a_job_that_ended_with_errors_has_an_errors_url_to_read() -> None:
    answer = {"status": "errored", "results": {"errored_count": 1, "errors_url": "https://x.example/e.csv"}}
    assert jobs.errors_url(answer) == "https://x.example/e.csv"
    assert jobs.errors_url({**answer, "status": "completed"}) is None
    assert jobs.errors_url({"status": "failed", "results": {"errors_url": 5}}) is None
    assert jobs.errors_url("not an object") is None


def test_applied_follows_job_ranges_statuses_and_failures() -> None:
    deliveries = jobs.Deliveries({"a": [0, 10]})
    deliveries.accepted("b", 10, 20)
    deliveries.accepted("c", 25, 30)
    deliveries.failed("b", {"x@x.io": "bad"})
    deliveries.settle(
        [
            {"job_id": "a", "contacts": 10, "status": "completed"},
            {"job_id": "b", "contacts": 10, "status": "errored", "results": {"errored_count": 1}},
            {"job_id": "c", "contacts": 5, "status": "pending"},
        ]
    )
    assert deliveries.applied(0, b"a@x.io") and deliveries.applied(9, b"a@x.io")
    assert deliveries.applied(12, b"y@x.io") and not deliveries.applied(12, b"x@x.io")
    assert not deliveries.applied(22, b"y@x.io")  # in no request (refused with a 400)
    assert not deliveries.applied(26, b"y@x.io")  # its job is still pending
    assert not deliveries.all_applied()
    deliveries.failed("b", None)  # an errors file that could not be read: nothing of b counts
    assert not deliveries.applied(12, b"y@x.io")


def test_a_reason_keeps_sendgrids_words_but_no_quoted_value() -> None:
    messages = ["email 'a@x.io' is not valid", "email 'b@x.io' is not valid", "you have hit your contact limit"]
    assert jobs.safe_reason(messages) == "email … is not valid"
    assert jobs.safe_reason(['bad value for e1_T: "Gold" at ana@x.io']) == "bad value for e1_T: … at …"
    assert jobs.safe_reason([]) == ""


def test_an_answer_of_an_unexpected_shape_counts_nothing_as_applied() -> None:
    job: JobEntry = {"job_id": "j1", "contacts": 10, "status": "pending"}
    assert jobs.apply_status(job, {"status": "errored", "results": {"errored_count": "n/a"}}) is None
    assert job["failed"] == 10 and job["results"] == {}
    jobs.apply_status(job, {"status": None, "results": "nonsense"})
    assert jobs.is_pending(job)


def test_only_a_job_mark_makes_a_record_need_settling(tmp_path: Path) -> None:
    from shared.run.confirm import _has_pending_marks  # noqa: PLC0415

    record = tmp_path / "record.tsv"
    record.write_bytes(b"a@x.io\th1\n" + b"b@x.io\th2\tfn,ci;\n" * 5000)
    assert not _has_pending_marks(record, block=7)  # unset codes only (blocks cut anywhere)
    record.write_bytes(b"a@x.io\th1\n" * 3000 + b"b@x.io\th2\tfn;job-1\n")
    assert _has_pending_marks(record, block=7)
    record.write_bytes(b"b@x.io\th2\t;j\n")
    assert _has_pending_marks(record, block=11)  # the mark cut between two blocks
