from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central.tickets.rules import (
    QuotaStatus,
    TicketUse,
    WeighingFacts,
    apply_weighing,
    check_reuse,
    check_ticket_required,
    decide_issuance,
    find_reuses,
    period_for,
)

T = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)


def status(**kw: int) -> QuotaStatus:
    return QuotaStatus("E610821001", "2026-11", capacity_kg=100_000, **kw)


def test_monitor_always_issues_and_says_when_over() -> None:
    d = decide_issuance("monitor", status(consumed_kg=120_000), 35_000)
    assert d.allowed and "超产" in d.message and d.status.reserved_kg == 35_000
    assert d.status.issued == 1


def test_enforce_refuses_beyond_remaining_with_reservations() -> None:
    s = status(consumed_kg=40_000, reserved_kg=30_000)  # 30 t left unreserved
    assert decide_issuance("enforce", s, 30_000).allowed
    refused = decide_issuance("enforce", s, 30_001)
    assert not refused.allowed and refused.status == s
    assert "超出核定产能" in refused.message and "Refused" in refused.message
    assert "30.0 t" in refused.message  # remaining figure is shown


def test_capacity_consumed_by_actual_not_planned() -> None:
    s = decide_issuance("enforce", status(), 30_000).status
    s, alarms = apply_weighing(s, 33_000, site="S1", released_planned_kg=30_000)
    assert (s.consumed_kg, s.reserved_kg, s.used) == (33_000, 0, 1) and not alarms
    assert s.to_json()["remaining_kg"] == 67_000


def test_over_production_alarm_once_on_crossing() -> None:
    s = status(consumed_kg=90_000)
    s, alarms = apply_weighing(s, 10_000, site="S1")
    assert not alarms and not s.over  # exactly at capacity is not over
    s, alarms = apply_weighing(s, 1, site="S1")
    assert [a.code for a in alarms] == ["over_production"]
    assert alarms[0].detail["over_kg"] == 1 and alarms[0].key.endswith("E610821001/2026-11")
    s, alarms = apply_weighing(s, 30_000, site="S1")
    assert not alarms and s.to_json()["over"] and s.to_json()["over_kg"] == 30_001


def test_invalid_amounts() -> None:
    with pytest.raises(ValueError):
        decide_issuance("monitor", status(), 0)
    with pytest.raises(ValueError):
        apply_weighing(status(), -1, site="S1")


def test_period_for_uses_china_time() -> None:
    assert period_for(datetime(2026, 11, 30, 17, 0, tzinfo=UTC)) == "2026-12"
    assert period_for(datetime(2026, 11, 30, 15, 59, tzinfo=UTC)) == "2026-11"
    assert period_for(T, "2026-10") == "2026-10"


def test_reuse_two_gates_and_same_gate_and_resend() -> None:
    first = TicketUse("T1", "S1", 10, T)
    assert check_reuse(first, []) is None
    assert check_reuse(first, [first]) is None  # a resend of the same entry
    at_other_gate = check_reuse(TicketUse("T1", "S2", 3, T + timedelta(minutes=5)), [first])
    assert at_other_gate is not None and at_other_gate.code == "ticket_reused"
    assert at_other_gate.severity == "critical" and at_other_gate.detail["sites"] == ["S1", "S2"]
    twice_here = check_reuse(TicketUse("T1", "S1", 11, T + timedelta(hours=1)), [first])
    assert twice_here is not None and len(twice_here.detail["uses"]) == 2


def test_find_reuses_batch() -> None:
    uses = [
        TicketUse("T1", "S2", 3, T + timedelta(minutes=5)),
        TicketUse("T1", "S1", 10, T),
        TicketUse("T1", "S1", 10, T),  # duplicate delivery
        TicketUse("T2", "S1", 12, T),
        TicketUse("T1", "S3", 1, T + timedelta(hours=2)),
    ]
    alarms = find_reuses(uses)
    assert [a.detail["uses"][-1]["site"] for a in alarms] == ["S2", "S3"]
    assert len({a.key for a in alarms}) == 2


@pytest.mark.parametrize(
    ("pass_", "ticket", "required", "alarm"),
    [
        ("gross", None, True, True),
        ("one_pass", None, True, True),
        ("tare", None, True, False),
        ("gross", "T1", True, False),
        ("gross", None, False, False),
    ],
)
def test_no_ticket(pass_: str, ticket: str | None, required: bool, alarm: bool) -> None:
    w = WeighingFacts("S1", 5, "S1-20261105-1", pass_, ticket, "陕K8A3B2")  # type: ignore[arg-type]
    result = check_ticket_required(w, ticket_required=required)
    assert (result is not None) is alarm
    if result is not None:
        assert result.code == "no_ticket" and result.detail["plate"] == "陕K8A3B2"
