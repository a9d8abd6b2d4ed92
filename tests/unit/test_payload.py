"""encode_payload: what a job's payload becomes on the way to JSONB, and what it refuses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretBytes, SecretStr, field_serializer

from pgqueue.errors import (
    InvalidQueueNameError,
    PayloadTooDeepError,
    PayloadTooLargeError,
    SecretInPayloadError,
    UnserializablePayloadError,
)
from pgqueue.job import (
    MAX_PAYLOAD_DEPTH,
    MAX_PAYLOAD_INT_DIGITS,
    Job,
    encode_payload,
    validate_queue_name,
)

LIMIT = 10_000


class Text(Job):
    text: str = ""

    def handle(self) -> None:
        pass


class Anything(Job):
    value: Any = None

    def handle(self) -> None:
        pass


class Number(Job):
    value: float = 0.0

    def handle(self) -> None:
        pass


class Credentials(BaseModel):
    user: str
    token: SecretStr


class WithCredentials(Job):
    credentials: Credentials

    def handle(self) -> None:
        pass


class WithToken(Job):
    token: SecretStr

    def handle(self) -> None:
        pass


class WithKey(Job):
    key: SecretBytes

    def handle(self) -> None:
        pass


class Blob(Job):
    data: bytes = b""

    def handle(self) -> None:
        pass


class Count(Job):
    number: int = 0

    def handle(self) -> None:
        pass


class Tree(BaseModel):
    children: list[Tree] = []


Tree.model_rebuild()


class Forest(Job):
    tree: Tree = Tree()

    def handle(self) -> None:
        pass


def _nested(depth: int) -> list[Any]:
    """A list nested `depth` levels deep: `_nested(1)` is `[]`."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _encoded_size(job: Job) -> int:
    return len(encode_payload(job, LIMIT).encode())


def test_payload_is_compact_json() -> None:
    assert encode_payload(Anything(value={"a": [1, 2]}), LIMIT) == '{"value":{"a":[1,2]}}'


def test_payload_round_trips_through_json() -> None:
    job = Anything(value={"user_id": 42, "tags": ["a", "b"], "ratio": 0.5})
    assert json.loads(encode_payload(job, LIMIT)) == job.model_dump(mode="json")


def test_payload_of_exactly_max_bytes_is_accepted() -> None:
    max_bytes = _encoded_size(Text(text="")) + 100
    text = encode_payload(Text(text="a" * 100), max_bytes)
    assert len(text.encode()) == max_bytes


def test_payload_one_byte_over_max_bytes_raises_payload_too_large() -> None:
    max_bytes = _encoded_size(Text(text="")) + 100
    with pytest.raises(PayloadTooLargeError):
        encode_payload(Text(text="a" * 101), max_bytes)


def test_payload_too_large_message_names_both_sizes() -> None:
    max_bytes = _encoded_size(Text(text="")) + 100
    with pytest.raises(PayloadTooLargeError, match=rf"{max_bytes + 1} bytes.*{max_bytes}-byte"):
        encode_payload(Text(text="a" * 101), max_bytes)


def test_secret_str_field_raises_secret_in_payload() -> None:
    with pytest.raises(SecretInPayloadError, match=r"payload\.token"):
        encode_payload(WithToken(token=SecretStr("hunter2")), LIMIT)


def test_secret_bytes_field_raises_secret_in_payload() -> None:
    with pytest.raises(SecretInPayloadError, match=r"payload\.key"):
        encode_payload(WithKey(key=SecretBytes(b"hunter2")), LIMIT)


def test_secret_inside_list_raises_secret_in_payload() -> None:
    with pytest.raises(SecretInPayloadError, match=r"payload\.value\[1\]"):
        encode_payload(Anything(value=["plain", SecretStr("hunter2")]), LIMIT)


def test_secret_inside_dict_raises_secret_in_payload() -> None:
    with pytest.raises(SecretInPayloadError, match=r"payload\.value\['password'\]"):
        encode_payload(Anything(value={"password": SecretStr("hunter2")}), LIMIT)


def test_secret_bytes_inside_dict_in_list_raises_secret_in_payload() -> None:
    with pytest.raises(SecretInPayloadError):
        encode_payload(Anything(value=[{"key": SecretBytes(b"hunter2")}]), LIMIT)


def test_secret_inside_nested_model_field_raises_secret_in_payload() -> None:
    job = WithCredentials(credentials=Credentials(user="u", token=SecretStr("hunter2")))
    with pytest.raises(SecretInPayloadError, match=r"payload\.credentials\.token"):
        encode_payload(job, LIMIT)


def test_secret_inside_model_held_by_any_field_raises_secret_in_payload() -> None:
    credentials = Credentials(user="u", token=SecretStr("hunter2"))
    with pytest.raises(SecretInPayloadError):
        encode_payload(Anything(value=credentials), LIMIT)


def test_secret_in_nested_model_extra_field_raises_secret_in_payload() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")

    with pytest.raises(SecretInPayloadError):
        encode_payload(Anything(value=Open(token=SecretStr("hunter2"))), LIMIT)


def test_secret_inside_dataclass_raises_secret_in_payload() -> None:
    @dataclasses.dataclass
    class Login:
        token: SecretStr

    with pytest.raises(SecretInPayloadError):
        encode_payload(Anything(value=Login(token=SecretStr("hunter2"))), LIMIT)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_raises_unserializable_payload(value: float) -> None:
    with pytest.raises(UnserializablePayloadError):
        encode_payload(Number(value=value), LIMIT)


def test_nan_inside_any_field_raises_unserializable_payload() -> None:
    with pytest.raises(UnserializablePayloadError):
        encode_payload(Anything(value={"ratio": float("nan")}), LIMIT)


def test_nul_character_raises_unserializable_payload() -> None:
    with pytest.raises(UnserializablePayloadError, match="NUL"):
        encode_payload(Text(text="a\x00b"), LIMIT)


def test_literal_backslash_u0000_text_is_accepted() -> None:
    # Six ordinary characters, not a NUL: JSONB stores the escaped backslash without complaint.
    text = encode_payload(Text(text="C:\\u0000"), LIMIT)
    assert json.loads(text) == {"text": "C:\\u0000"}


def test_queue_name_of_63_bytes_is_valid() -> None:
    assert validate_queue_name("q" * 63) == "q" * 63


def test_queue_name_of_64_bytes_raises_invalid_queue_name() -> None:
    with pytest.raises(InvalidQueueNameError, match="64 bytes"):
        validate_queue_name("q" * 64)


def test_queue_name_length_counts_utf8_bytes_not_characters() -> None:
    name = "é" * 32  # 32 characters, 64 bytes
    with pytest.raises(InvalidQueueNameError, match="64 bytes"):
        validate_queue_name(name)


def test_queue_name_of_multibyte_characters_within_63_bytes_is_valid() -> None:
    name = "é" * 31 + "q"  # 32 characters, 63 bytes
    assert validate_queue_name(name) == name


def test_queue_name_with_del_character_raises_invalid_queue_name() -> None:
    with pytest.raises(InvalidQueueNameError, match="control"):
        validate_queue_name("a\x7fb")


def test_empty_queue_name_raises_invalid_queue_name() -> None:
    with pytest.raises(InvalidQueueNameError):
        validate_queue_name("")


def test_non_string_queue_name_raises_invalid_queue_name() -> None:
    with pytest.raises(InvalidQueueNameError):
        validate_queue_name(None)


def test_lone_surrogate_raises_unserializable_payload_naming_the_field() -> None:
    with pytest.raises(UnserializablePayloadError, match=r"Text\.text holds a lone surrogate"):
        encode_payload(Text(text="caf\udce9"), LIMIT)


def test_lone_surrogate_in_a_key_raises_unserializable_payload() -> None:
    with pytest.raises(UnserializablePayloadError, match=r"Anything\.value holds a lone surrogate"):
        encode_payload(Anything(value={"\ud800": 1}), LIMIT)


def test_bytes_that_are_not_utf8_raise_unserializable_payload_naming_the_field() -> None:
    with pytest.raises(UnserializablePayloadError, match=r"Blob\.data holds bytes that are not"):
        encode_payload(Blob(data=b"\xff"), LIMIT)


def test_utf8_bytes_are_stored_as_text() -> None:
    assert encode_payload(Blob(data="é".encode()), LIMIT) == '{"data":"é"}'


def test_unknown_type_raises_unserializable_payload_naming_the_field() -> None:
    with pytest.raises(UnserializablePayloadError, match=r"Anything\.value holds a value pydantic"):
        encode_payload(Anything(value=object()), LIMIT)


def test_failing_field_serializer_raises_unserializable_payload() -> None:
    class Broken(Job):
        value: int = 0

        @field_serializer("value")
        def explode(self, value: int) -> int:
            raise KeyError("boom")

        def handle(self) -> None:
            pass

    with pytest.raises(UnserializablePayloadError, match=r"Broken\.value"):
        encode_payload(Broken(), LIMIT)


def test_nul_character_in_a_key_raises_unserializable_payload() -> None:
    with pytest.raises(UnserializablePayloadError, match=r"Anything\.value holds a NUL"):
        encode_payload(Anything(value={"a\x00b": 1}), LIMIT)


def test_payload_nested_to_the_depth_limit_is_accepted() -> None:
    # The payload object is level 1, so its field may hold MAX_PAYLOAD_DEPTH - 1 levels.
    text = encode_payload(Anything(value=_nested(MAX_PAYLOAD_DEPTH - 1)), LIMIT)
    assert text.count("[") == MAX_PAYLOAD_DEPTH - 1


def test_payload_one_level_past_the_depth_limit_raises_payload_too_deep() -> None:
    with pytest.raises(PayloadTooDeepError, match=rf"more than {MAX_PAYLOAD_DEPTH} levels"):
        encode_payload(Anything(value=_nested(MAX_PAYLOAD_DEPTH)), LIMIT)


def test_ten_thousand_deep_list_raises_payload_too_deep_not_recursion_error() -> None:
    with pytest.raises(PayloadTooDeepError):
        encode_payload(Anything(value=_nested(10_000)), LIMIT)


def test_deep_typed_models_past_the_limit_raise_payload_too_deep() -> None:
    tree = Tree()
    for _ in range(MAX_PAYLOAD_DEPTH):
        tree = Tree(children=[tree])
    with pytest.raises(PayloadTooDeepError):
        encode_payload(Forest(tree=tree), LIMIT)


def test_deep_dicts_holding_a_secret_raise_payload_too_deep_before_searching_on() -> None:
    value: dict[str, Any] = {"token": SecretStr("hunter2")}
    for _ in range(10_000):
        value = {"next": value}
    with pytest.raises(PayloadTooDeepError):
        encode_payload(Anything(value=value), LIMIT)


def test_list_holding_itself_raises_payload_too_deep_naming_the_cycle() -> None:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    with pytest.raises(PayloadTooDeepError, match=r"payload\.value\[1\] contains itself"):
        encode_payload(Anything(value=cycle), LIMIT)


def test_model_holding_itself_raises_payload_too_deep() -> None:
    tree = Tree()
    tree.children.append(tree)
    with pytest.raises(PayloadTooDeepError, match="contains itself"):
        encode_payload(Forest(tree=tree), LIMIT)


def test_one_list_shared_many_times_is_not_a_cycle() -> None:
    shared = [1, 2]
    assert encode_payload(Anything(value=[shared, shared, {"a": shared}]), LIMIT) == (
        '{"value":[[1,2],[1,2],{"a":[1,2]}]}'
    )


def test_sharing_that_would_write_out_past_the_limit_raises_payload_too_large() -> None:
    value: list[Any] = []
    for _ in range(60):  # 2**60 lists once written out, a few hundred bytes in memory
        value = [value, value]
    with pytest.raises(PayloadTooLargeError, match="lists, dicts and models"):
        encode_payload(Anything(value=value), LIMIT)


def test_integer_of_the_digit_limit_is_accepted() -> None:
    number = int("9" * MAX_PAYLOAD_INT_DIGITS)
    assert json.loads(encode_payload(Count(number=number), LIMIT)) == {"number": number}


@pytest.mark.parametrize("sign", [1, -1], ids=["positive", "negative"])
def test_integer_one_digit_past_the_limit_raises_unserializable_payload(sign: int) -> None:
    number = sign * 10**MAX_PAYLOAD_INT_DIGITS
    with pytest.raises(UnserializablePayloadError, match=r"Count\.number holds an integer of 4301"):
        encode_payload(Count(number=number), LIMIT)


def test_long_integer_inside_any_field_raises_unserializable_payload() -> None:
    with pytest.raises(UnserializablePayloadError, match="integer of 5000 digits"):
        encode_payload(Anything(value={"n": [10**4999]}), LIMIT)


def test_long_run_of_digits_inside_a_string_is_accepted() -> None:
    text = encode_payload(Text(text="7" * 5000), LIMIT)
    assert json.loads(text) == {"text": "7" * 5000}


def test_json_tokens_inside_strings_are_not_mistaken_for_structure() -> None:
    job = Anything(value={"[[[{{{": "NaN -Infinity"})
    assert json.loads(encode_payload(job, LIMIT)) == {"value": {"[[[{{{": "NaN -Infinity"}}
