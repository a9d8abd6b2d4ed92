"""Doctor's formatting, without a database."""

from __future__ import annotations

import pytest

from pgqueue.doctor import Check, Verdict, XminHolder, format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (192, "3m 12s"), (7200, "2h"), (7500, "2h 05m")],
)
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_check_prints_as_an_aligned_verdict_line() -> None:
    line = str(Check("workers", Verdict.WARN, "no worker"))
    assert line == "WARN  workers             no worker"


# Rows as the oldest_xmin_holder statement returns them: the kinds the test cluster cannot
# provoke (no standby, no logical WAL, no prepared transactions) are worded from these.
SESSION = (
    "session",
    4242,
    "app",
    "billing-report",
    "idle in transaction",
    85.2,
    7,
    "SELECT 1",
    None,
)
PREPARED = ("prepared", None, "app", None, "prepared", 3600.0, 12, None, "tx-7")
INACTIVE_SLOT = ("slot", None, None, None, "physical, inactive", None, 90_000, None, "replica_2")
ACTIVE_SLOT = ("slot", 777, None, None, "physical, active", None, 300, None, "replica_1")
STANDBY = ("standby", 778, "replicator", "walreceiver", "active", None, 40, None, None)


def test_a_session_is_named_by_pid_state_user_application_and_age() -> None:
    holder = XminHolder.from_row(SESSION)
    assert holder.describe() == (
        "pid 4242 (idle in transaction, user app, application 'billing-report') open for "
        "1m 25s, 7 xids old"
    )
    assert holder.fix() == (
        "commit or roll it back in its application, or SELECT pg_terminate_backend(4242)"
    )


def test_a_prepared_transaction_is_named_by_its_gid() -> None:
    holder = XminHolder.from_row(PREPARED)
    assert holder.describe() == "prepared transaction 'tx-7' (owner app) open for 1h, 12 xids old"
    assert holder.fix() == "COMMIT PREPARED or ROLLBACK PREPARED 'tx-7'"


def test_an_inactive_slot_is_abandoned_and_the_fix_drops_it() -> None:
    holder = XminHolder.from_row(INACTIVE_SLOT)
    assert holder.abandoned
    assert holder.describe() == (
        "replication slot 'replica_2' (physical, inactive) holds an xmin 90,000 xids old"
    )
    assert "SELECT pg_drop_replication_slot('replica_2')" in holder.fix()


def test_an_active_slot_and_a_standby_point_at_the_standbys_query() -> None:
    slot, standby = XminHolder.from_row(ACTIVE_SLOT), XminHolder.from_row(STANDBY)
    assert not slot.abandoned
    assert slot.describe() == (
        "replication slot 'replica_1' (physical, active, walsender pid 777) holds an xmin "
        "300 xids old"
    )
    assert standby.describe() == (
        "the standby ('walreceiver') behind walsender pid 778 holds an xmin 40 xids old"
    )
    for holder in (slot, standby):
        assert "hot_standby_feedback" in holder.fix()
        assert holder.seconds is None


def test_a_holder_as_json_carries_its_fields_and_description() -> None:
    document = XminHolder.from_row(SESSION).to_json()
    assert document["pid"] == 4242
    assert document["seconds"] == 85.2
    assert document["query"] == "SELECT 1"
    assert document["description"].startswith("pid 4242 (idle in transaction")
