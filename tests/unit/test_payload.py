"""encode_payload: what a job's payload becomes on the way to JSONB, and what it refuses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretBytes, SecretStr

from pgqueue.errors import (
    InvalidQueueNameError,
    PayloadTooLargeError,
    SecretInPayloadError,
    UnserializablePayloadError,
)
from pgqueue.job import Job, encode_payload, validate_queue_name

LIMIT = 10_000


class Text(Job):
    text: str = ""


class Anything(Job):
    value: Any = None


class Number(Job):
    value: float = 0.0


class Credentials(BaseModel):
    user: str
    token: SecretStr


class WithCredentials(Job):
    credentials: Credentials


class WithToken(Job):
    token: SecretStr


class WithKey(Job):
    key: SecretBytes


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
