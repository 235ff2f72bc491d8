"""API problems as the CLI prints them: once, naming the flag that sets the field."""

from __future__ import annotations

import io

from service.cli.client import ApiError
from service.cli.main import flag_of, print_api_error
from service.cli.schedule_flags import FIELD_FLAGS


def test_a_problem_with_field_errors_is_printed_once() -> None:
    message = "minute field: 61 is out of range 0-59"
    problem = {
        "title": "Invalid request",
        "status": 422,
        "detail": f"spec.cron.0: {message}",
        "errors": [{"field": "spec.cron.0", "message": message}],
    }
    err = io.StringIO()
    print_api_error(ApiError(422, problem), FIELD_FLAGS, err)
    assert err.getvalue().count(message) == 1
    assert "spec.cron.0 (--cron)" in err.getvalue()
    err = io.StringIO()
    print_api_error(ApiError(404, {"detail": "schedule 'x' does not exist"}), {}, err)
    assert err.getvalue() == "cronstream: 404: schedule 'x' does not exist\n"


def test_fields_map_to_the_flag_that_sets_them() -> None:
    assert flag_of("spec.cron.0", FIELD_FLAGS) == "--cron"
    assert flag_of("policy.catchup_window", FIELD_FLAGS) == "--catchup-window"
    assert flag_of("spec.intervals.1.every", FIELD_FLAGS) == "--interval"
    assert flag_of("body", FIELD_FLAGS) is None
