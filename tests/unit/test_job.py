"""Job subclass definitions: reserved names, job names, class settings, payload validation."""

from __future__ import annotations

import warnings

import pytest
from pydantic import ValidationError

from pgqueue.errors import JobDefinitionError
from pgqueue.job import Job, job_type, load_job

# pydantic warns that such a field shadows the class attribute before pgqueue refuses it; the
# tests of the refusal itself ignore that warning (test_reserved_field_is_refused_without_a_warning
# covers it).
_SHADOW_WARNING = r"Field name .* shadows an attribute in parent"
RESERVED = (
    "queue",
    "max_tries",
    "timeout",
    "retry_after",
    "priority",
    "job_name",
    "job_id",
    "attempts",
)


def _define_job(name: str, annotations: dict[str, object], **namespace: object) -> type[Job]:
    body: dict[str, object] = {
        "__annotations__": annotations,
        "__module__": __name__,
        "handle": lambda self: None,
    }
    body.update(namespace)
    return type(name, (Job,), body)


@pytest.mark.parametrize("field", RESERVED)
def test_reserved_name_as_payload_field_raises_job_definition_error(field: str) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _SHADOW_WARNING, UserWarning)
        with pytest.raises(JobDefinitionError, match=field):
            _define_job(f"Reserved_{field}", {field: int})


@pytest.mark.parametrize("field", RESERVED)
def test_reserved_field_is_refused_without_a_warning(field: str) -> None:
    # The project runs with warnings as errors, as many users' test suites do: a pydantic warning
    # raised first would replace the JobDefinitionError that says how to fix the class.
    with pytest.raises(JobDefinitionError):
        _define_job(f"ReservedNoWarning_{field}", {field: int})


def test_field_called_name_is_allowed() -> None:
    class Named(Job):
        name: str

        def handle(self) -> None:
            pass

    assert Named(name="report").name == "report"


def test_default_job_name_is_module_and_qualname() -> None:
    class Plain(Job):
        def handle(self) -> None:
            pass

    assert Plain.job_name == f"{__name__}.{Plain.__qualname__}"


def test_default_job_name_is_registered() -> None:
    class Registered(Job):
        def handle(self) -> None:
            pass

    assert job_type(Registered.job_name) is Registered


def test_custom_job_name_is_kept() -> None:
    class Renamed(Job):
        job_name = "tests.unit.test_custom_job_name_is_kept"

        def handle(self) -> None:
            pass

    assert Renamed.job_name == "tests.unit.test_custom_job_name_is_kept"


def test_custom_job_name_is_registered() -> None:
    class Renamed(Job):
        job_name = "tests.unit.test_custom_job_name_is_registered"

        def handle(self) -> None:
            pass

    assert job_type("tests.unit.test_custom_job_name_is_registered") is Renamed


def test_duplicate_job_name_across_classes_raises_naming_both() -> None:
    class First(Job):
        job_name = "tests.unit.test_duplicate_job_name_across_classes"

        def handle(self) -> None:
            pass

    with pytest.raises(JobDefinitionError) as caught:

        class Second(Job):
            job_name = "tests.unit.test_duplicate_job_name_across_classes"

            def handle(self) -> None:
                pass

    message = str(caught.value)
    assert "<locals>.First" in message
    assert "<locals>.Second" in message


@pytest.mark.parametrize(
    "queue",
    ["", "a" * 64, "a\nb"],
    ids=["empty", "64-bytes", "control-char"],
)
def test_invalid_class_queue_raises_at_definition(queue: str) -> None:
    with pytest.raises(JobDefinitionError, match="queue"):
        _define_job("BadQueue", {}, queue=queue)


def test_zero_max_tries_raises_at_definition() -> None:
    with pytest.raises(JobDefinitionError, match="max_tries"):
        _define_job("NoTries", {}, max_tries=0)


def test_zero_timeout_raises_at_definition() -> None:
    with pytest.raises(JobDefinitionError, match="timeout"):
        _define_job("NoTime", {}, timeout=0)


@pytest.mark.parametrize(
    "retry_after",
    [[], "x", -1],
    ids=["empty-list", "string", "negative"],
)
def test_invalid_retry_after_raises_at_definition(retry_after: object) -> None:
    with pytest.raises(JobDefinitionError, match="retry_after"):
        _define_job("BadRetry", {}, retry_after=retry_after)


def test_seed_style_assignment_sets_field() -> None:
    class Seeded(Job):
        user_id: int = 0

        def handle(self) -> None:
            pass

    job = Seeded()
    job.user_id = 42
    assert job.user_id == 42


def test_assignment_of_wrong_type_raises_validation_error() -> None:
    class Seeded(Job):
        user_id: int = 0

        def handle(self) -> None:
            pass

    job = Seeded()
    with pytest.raises(ValidationError):
        job.user_id = "not a number"  # type: ignore[assignment]


def test_extra_field_is_forbidden() -> None:
    class Strict(Job):
        user_id: int

        def handle(self) -> None:
            pass

    with pytest.raises(ValidationError):
        Strict(user_id=1, unknown=2)  # type: ignore[call-arg]


def test_job_id_is_none_before_dispatch() -> None:
    class Fresh(Job):
        def handle(self) -> None:
            pass

    assert Fresh().job_id is None


def test_attempts_is_zero_before_dispatch() -> None:
    class Fresh(Job):
        def handle(self) -> None:
            pass

    assert Fresh().attempts == 0


def test_load_job_sets_job_id() -> None:
    class Stored(Job):
        user_id: int

        def handle(self) -> None:
            pass

    assert load_job(Stored, {"user_id": 7}, job_id=11, attempts=2).job_id == 11


def test_load_job_sets_attempts() -> None:
    class Stored(Job):
        user_id: int

        def handle(self) -> None:
            pass

    assert load_job(Stored, {"user_id": 7}, job_id=11, attempts=2).attempts == 2


def test_load_job_restores_payload() -> None:
    class Stored(Job):
        user_id: int

        def handle(self) -> None:
            pass

    assert load_job(Stored, {"user_id": 7}, job_id=11, attempts=2).model_dump() == {"user_id": 7}


def test_load_job_with_bad_payload_raises_validation_error() -> None:
    class Stored(Job):
        user_id: int

        def handle(self) -> None:
            pass

    with pytest.raises(ValidationError):
        load_job(Stored, {"user_id": "seven"}, job_id=11, attempts=2)


def test_load_job_with_unknown_payload_key_raises_validation_error() -> None:
    class Stored(Job):
        user_id: int

        def handle(self) -> None:
            pass

    with pytest.raises(ValidationError):
        load_job(Stored, {"user_id": 7, "removed_field": 1}, job_id=11, attempts=2)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("max_tries", 2**31),
        ("max_tries", True),
        ("max_tries", 2.0),
        ("priority", 2**31),
        ("priority", -(2**31) - 1),
        ("priority", 2**63),
        ("priority", True),
        ("priority", 0.5),
        ("timeout", float("inf")),
        ("timeout", float("nan")),
        ("timeout", -1),
        ("timeout", True),
        ("timeout", 100 * 365.25 * 86400 + 1),
        ("retry_after", float("inf")),
        ("retry_after", float("nan")),
        ("retry_after", [10, float("nan")]),
        ("retry_after", [10, 1e300]),
        ("retry_after", [True]),
        ("retry_after", b"10"),
    ],
    ids=repr,
)
def test_out_of_range_setting_raises_at_definition(attribute: str, value: object) -> None:
    with pytest.raises(JobDefinitionError, match=rf"BadSetting\.{attribute} "):
        _define_job("BadSetting", {}, **{attribute: value})


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("max_tries", 2**31 - 1),
        ("priority", 2**31 - 1),
        ("priority", -(2**31)),
        ("timeout", 100 * 365.25 * 86400),
        ("timeout", 0.001),
        ("retry_after", 0),
        ("retry_after", [0, 100 * 365.25 * 86400]),
    ],
    ids=repr,
)
def test_setting_at_its_limit_is_accepted_at_definition(attribute: str, value: object) -> None:
    job_class = _define_job(f"AtLimit_{attribute}", {}, **{attribute: value})
    assert getattr(job_class, attribute) == value


@pytest.mark.parametrize(
    "job_name",
    [
        None,
        "",
        "   ",
        " jobs.padded",
        "jobs.padded\t",
        "12345",
        "-1.5",
        "1e3",
        42,
        b"jobs.x",
        "jobs\x00x",
        "jobs\nx",
        "jobs\x85x",
        "jobs.\ud800",
        "j" * 256,
        "é" * 128,
    ],
    ids=repr,
)
def test_invalid_job_name_raises_at_definition(job_name: object) -> None:
    with pytest.raises(JobDefinitionError, match=r"BadName\.job_name "):
        _define_job("BadName", {}, job_name=job_name)


@pytest.mark.parametrize(
    "job_name", ["j" * 255, "é" * 127 + "j", "jobs.v2", "emails.send welcome", "42.jobs"], ids=repr
)
def test_job_name_within_the_rules_is_accepted(job_name: str) -> None:
    assert _define_job("GoodName", {}, job_name=job_name).job_name == job_name


def test_invalid_default_job_name_raises_saying_to_set_one() -> None:
    with pytest.raises(JobDefinitionError, match=r"default job_name.*set `job_name`"):
        _define_job("LongModule", {}, __module__="m" * 300)


def test_refused_definition_registers_nothing() -> None:
    with pytest.raises(JobDefinitionError):
        _define_job("NotRegistered", {}, job_name="tests.unit.not_registered", max_tries=2**31)
    assert job_type("tests.unit.not_registered") is None


# ---- definition mistakes, in the words of the one who made them ---------------------------------


@pytest.mark.parametrize(
    ("attribute", "meant"),
    [("max_retries", "max_tries"), ("timout", "timeout"), ("retry_afer", "retry_after")],
)
def test_a_misspelled_setting_is_refused_with_the_close_match(attribute: str, meant: str) -> None:
    with pytest.raises(JobDefinitionError, match=rf"Typo\.{attribute} .*did you mean {meant}\?"):
        _define_job("Typo", {}, **{attribute: 5})


def test_a_plain_attribute_far_from_every_setting_gets_no_guess() -> None:
    # pydantic's own error stays: it names the attribute and says to annotate it.
    with pytest.raises(Exception, match="non-annotated attribute") as raised:
        _define_job("Unrelated", {}, colour="blue")
    assert not isinstance(raised.value, JobDefinitionError)


def test_a_setting_written_as_an_annotated_field_says_to_drop_the_annotation() -> None:
    with pytest.raises(
        JobDefinitionError,
        match=r"Annotated\.queue is a job setting, not a payload field: drop the annotation "
        r"\(write `queue = 'emails'`\)",
    ):
        _define_job("Annotated", {"queue": str}, queue="emails")


def test_a_setting_annotated_as_a_class_var_is_accepted() -> None:
    from typing import ClassVar

    job_class = _define_job("Declared", {"queue": ClassVar[str]}, queue="emails")
    assert job_class.queue == "emails"
    assert "queue" not in job_class.model_fields


def test_a_job_type_without_handle_is_refused_when_defined() -> None:
    with pytest.raises(JobDefinitionError, match=r"Idle has no handle\(\) method.*abstract=True"):

        class Idle(Job):
            user_id: int = 0


def test_an_abstract_base_needs_no_handle_and_is_never_registered() -> None:
    class EmailJob(Job, abstract=True):
        queue = "emails"
        address: str = ""

    class Welcome(EmailJob):
        def handle(self) -> None:
            pass

    assert job_type(EmailJob.job_name) is None
    assert job_type(Welcome.job_name) is Welcome
    assert Welcome.queue == "emails"
    with pytest.raises(JobDefinitionError, match="Reminder has no handle"):

        class Reminder(EmailJob):
            pass


def test_retry_on_and_fail_on_take_tuples_of_exception_classes() -> None:
    job_class = _define_job(
        "RetriesTimeouts", {}, retry_on=(TimeoutError, ConnectionError), fail_on=(PermissionError,)
    )
    assert job_class.retry_on == (TimeoutError, ConnectionError)
    assert job_class.fail_on == (PermissionError,)


@pytest.mark.parametrize("setting", ["retry_on", "fail_on"])
def test_a_single_exception_class_is_refused_with_the_tuple_to_write(setting: str) -> None:
    with pytest.raises(JobDefinitionError, match=rf"`{setting} = \(TimeoutError,\)`"):
        _define_job("OneClass", {}, **{setting: TimeoutError})


@pytest.mark.parametrize("value", [[TimeoutError], ("TimeoutError",), (TimeoutError, int), "x"])
def test_retry_on_holding_anything_but_exception_classes_is_refused(value: object) -> None:
    with pytest.raises(JobDefinitionError, match=r"retry_on must be a tuple of exception classes"):
        _define_job("BadRetryOn", {}, retry_on=value)


def test_retry_on_as_a_payload_field_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match=r"retry_on is a job setting"):
        _define_job("FieldRetryOn", {"retry_on": tuple}, retry_on=(TimeoutError,))
