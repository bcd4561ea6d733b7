"""The pure rules behind override alarms and the central's ticket re-check (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central.rules.overrides import WeighingView, judge_override
from central.tickets.rules import IssuedTicket, NetTolerance, recheck_ticket
from edge_agent.plates.grammar import normalise_plate

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def held(*reasons: str, decision: str = "hold", voided: bool = False,
         hand: bool = False) -> WeighingView:
    return WeighingView(seq=10, pass_="one_pass", decision=decision, reasons=reasons,
                        net_kg=30000, plate="陕K55555", ticket_id=None, voided=voided,
                        hand_released=hand)


def body(action: str, txn: str | None = "S1-20261128-1", **extra: object) -> dict[str, object]:
    return {"txn": txn, "action": action, "operator": "张三", "reason": "核实", **extra}


@pytest.mark.parametrize(("action", "txn", "weighing", "code", "severity", "releases", "voids"), [
    ("manual_barrier_up", "t", held("no_ticket"), "override_release", "warning", True, False),
    ("manual_barrier_up", "t", held("plate_mismatch"), "override_release", "warning", True,
     False),
    ("manual_barrier_up", "t", held("overload"), "override_release", "critical", True, False),
    ("manual_barrier_up", "t", None, "override_release", "critical", False, False),
    ("manual_barrier_up", "t", held(voided=True), "override_release", "critical", False, False),
    ("manual_barrier_up", "t", held(decision="release"), "override_release", "info", False,
     False),
    ("manual_barrier_up", "t", held(hand=True), "override_release", "info", False, False),
    ("manual_barrier_up", None, None, "override_open_lane", "critical", False, False),
    ("open_lane", None, None, "override_open_lane", "critical", False, False),
    ("void", "t", held("no_ticket"), "override_void", "info", False, True),
    ("void", "t", held(decision="release"), "override_void", "warning", False, True),
    ("void", "t", held(voided=True), "override_void", "info", False, False),
])
def test_override_alarm_and_effect(action: str, txn: str | None, weighing: WeighingView | None,
                                   code: str, severity: str, releases: bool,
                                   voids: bool) -> None:
    out = judge_override("S1", 42, body(action, txn), weighing)
    assert out is not None
    assert (out.alarm.code, out.alarm.severity) == (code, severity)
    assert out.alarm.dedup_key == "override:42" and out.alarm.detail["category"] == "override"
    assert (out.releases is not None, out.voids is not None) == (releases, voids)


def test_typed_plate_is_a_warning_only_when_it_replaces_a_different_read() -> None:
    typed = judge_override("S1", 1, body("manual_plate", plate="陕K12345",
                                         read_plate="陕K12346"), None)
    unread = judge_override("S1", 2, body("manual_plate", plate="陕K12345", read_plate=None),
                            None)
    assert typed is not None and typed.alarm.severity == "warning"
    assert unread is not None and unread.alarm.severity == "info"
    assert judge_override("S1", 3, body("dance"), None) is None
    # A gate without operator accounts writes no role: recorded as None, not refused.
    assert unread.alarm.detail["role"] is None


def ticket(**changes: object) -> IssuedTicket:
    base: dict[str, object] = dict(
        ticket_id="T1", enterprise="E1", site="S1", plate="陕K·7X215", planned_net_kg=34000,
        valid_from=T0 - timedelta(hours=1), valid_to=T0 + timedelta(hours=47), voided_at=None)
    base.update(changes)
    return IssuedTicket(**base)  # type: ignore[arg-type]


def check(t: IssuedTicket | None, *, at: datetime = T0, plate: str = "陕K7X215",
          net: int | None = 34000, enterprise: str = "E1") -> list[str]:
    return sorted(recheck_ticket(t, at=at, plate=plate, net_kg=net, enterprise=enterprise,
                                 tolerance=NetTolerance(), normalise=normalise_plate))


def test_recheck_passes_an_honest_weighing_with_the_plate_written_differently() -> None:
    assert check(ticket()) == []
    assert check(ticket(), net=34000 + 1700) == []  # 5 % of 34 t is the edge
    assert check(ticket(), net=None) == []  # a tare-less weighing has no net to compare


def test_recheck_names_every_failed_check() -> None:
    assert check(None) == ["exists"]
    assert check(ticket(), plate="陕K12345") == ["plate"]
    assert check(ticket(), net=34000 + 1701) == ["net"]
    assert check(ticket(planned_net_kg=5000), net=5500) == []  # the 500 kg floor
    assert check(ticket(), at=T0 + timedelta(days=3)) == ["validity"]
    assert check(ticket(), at=T0 - timedelta(hours=2)) == ["validity"]
    assert check(ticket(), enterprise="E2") == ["enterprise"]
    assert check(ticket(), plate="陕K12345", net=1000, enterprise="E2") == [
        "enterprise", "net", "plate"]
