"""Gate liveness truth (issue 12, item 8): the status heartbeat carries the gate's situation,
decoded tolerantly and bounded; the pure gate_stalled rule turns it into
"N 分钟无过磅，有车等待"."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from central.rules import GateView, stalled_alarms, stalled_for
from central.settings import RuleSettings
from edge_agent.gate import GateController, GatePolicy, Operator, OperatorRefused
from edge_agent.runtime import gate_situation_of
from edge_agent.sync.protocol import ProtocolError, Status
from tests.edge.gate_harness import Gate

NOW = datetime(2026, 11, 19, 8, 0, tzinfo=UTC)
RULES = RuleSettings(gate_stalled_after_s=600)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_status_heartbeat_round_trips_the_gate_situation() -> None:
    gate = {"state": "held", "last_weighing_ts": "2026-11-19T07:40:00.000Z",
            "waiting_since": "2026-11-19T07:45:00.000Z"}
    s = Status.decode(Status("online", "2026-11-19T08:00:00.000Z", 5, 6, gate).encode())
    assert s.gate == gate and s.as_dict()["gate"] == gate
    assert Status.decode(Status("online").encode()).gate is None  # older gates: no gate key


def test_status_gate_object_is_decoded_tolerantly_and_bounded() -> None:
    odd = {"v": 1, "state": "online", "gate": {"state": "dancing", "last_weighing_ts": 7,
                                               "waiting_since": "yesterday", "x": "y" * 100}}
    s = Status.decode(json.dumps(odd).encode())
    assert s.gate == {"state": None, "last_weighing_ts": None, "waiting_since": None}
    s = Status.decode(json.dumps({"v": 1, "state": "online", "gate": [1, 2]}).encode())
    assert s.gate is None
    with pytest.raises(ProtocolError, match="exceeds"):
        Status.decode(json.dumps({"v": 1, "state": "online", "pad": "x" * 5000}).encode())


def test_gate_reports_since_when_a_truck_waits_and_its_last_weighing() -> None:
    g = Gate()
    assert g.ctrl.gate_status() == {"state": "idle", "last_weighing_ms": None,
                                    "waiting_since_ms": None}
    g.drive_on(26000, "陕K12345", axles=3)
    arrived = g.ctrl.gate_status()["waiting_since_ms"]
    assert arrived is not None
    g.hold(26000, 3000)  # overloaded: held, and nobody may release it
    st = g.ctrl.gate_status()
    assert st["state"] == "held" and st["last_weighing_ms"] is not None
    assert st["waiting_since_ms"] == arrived
    with pytest.raises(OperatorRefused):
        g.send(Operator("manual_barrier_up", "张三", "司机要求"))
    sit = gate_situation_of(st)
    assert sit["state"] == "held" and sit["waiting_since"].endswith("Z")
    assert datetime.fromisoformat(sit["waiting_since"].replace("Z", "+00:00")).tzinfo
    assert Status.decode(Status("online", gate=sit).encode()).gate == sit


def test_idle_gate_waits_for_nobody() -> None:
    g = Gate(GateController(GatePolicy("S1")))
    g.hold(0, 1000)
    assert g.ctrl.gate_status()["waiting_since_ms"] is None


def test_truck_waiting_with_no_weighing_past_the_threshold_is_stalled() -> None:
    gate = {"state": "released", "last_weighing_ts": iso(NOW - timedelta(minutes=40)),
            "waiting_since": iso(NOW - timedelta(minutes=25))}
    view = GateView("S1", True, gate)
    quiet = stalled_for(view, NOW, RULES)
    assert quiet == timedelta(minutes=25)
    [draft] = stalled_alarms([view], NOW, RULES)
    assert draft.code == "gate_stalled" and draft.site == "S1"
    assert draft.detail["minutes"] == 25 and draft.detail["gate_state"] == "released"
    assert draft.dedup_key == f"gate_stalled:{gate['waiting_since']}"


@pytest.mark.parametrize(
    ("online", "gate"),
    [
        (True, None),  # an older gate that says nothing about itself
        (True, {"state": "idle", "last_weighing_ts": None, "waiting_since": None}),
        (True, {"state": "held", "last_weighing_ts": None,
                "waiting_since": iso(NOW - timedelta(minutes=5))}),  # not long yet
        (True, {"state": "held", "last_weighing_ts": iso(NOW - timedelta(minutes=2)),
                "waiting_since": iso(NOW - timedelta(minutes=30))}),  # weighed just now
        (False, {"state": "held", "last_weighing_ts": None,
                 "waiting_since": iso(NOW - timedelta(minutes=30))}),  # site_offline instead
    ],
)
def test_not_stalled(online: bool, gate: dict[str, object] | None) -> None:
    view = GateView("S1", online, gate)
    assert stalled_for(view, NOW, RULES) is None and stalled_alarms([view], NOW, RULES) == []
