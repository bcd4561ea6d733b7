"""Issue 12, at the gate: overrides that cannot bypass the rules, a forced barrier answered by
"down", no weighing for a truck that has left, and the stuck gate. The pure controller, fed
events with a simulated clock (tests/edge/gate_harness.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.gate import (
    Barrier,
    DeviceStatus,
    Inputs,
    Operator,
    OperatorRefused,
    PlateRead,
    Tick,
    TicketScan,
    WeightSample,
)
from tests.edge.gate_harness import Gate

PLATE = "陕K12345"
SUP = {"role": "supervisor"}


def released_truck(g: Gate, kg: int = 30000) -> None:
    g.drive_on(kg, PLATE)
    g.hold(kg, 3000)
    assert g.barrier_up and g.ctrl.state == "released"


def barrier_cmds(g: Gate, since: int = 0) -> list[bool]:
    return [a.up for a in g.actions[since:] if isinstance(a, Barrier)]


# -- manual_barrier_up only for a held, weighed truck ------------------------------------------


def test_barrier_up_refused_while_the_lane_is_empty() -> None:
    g = Gate()
    with pytest.raises(OperatorRefused, match="open_lane"):
        g.send(Operator("manual_barrier_up", "张三", "司机要求"))
    assert not g.barrier_up and not g.bodies("override")


def test_barrier_up_refused_while_driving_on_weighing_and_identifying() -> None:
    g = Gate(ticket_required=True, identify_timeout_ms=20_000)
    g.set_io(loop_entry=True, ir_entry=True)
    g.ramp(0, 20000, 1000)
    assert g.ctrl.state == "entering"  # driving on
    with pytest.raises(OperatorRefused, match="not held after a weighing"):
        g.send(Operator("manual_barrier_up", "张三", "司机要求"))
    g.ramp(20000, 30000, 1000)
    g.set_io(ir_entry=False, loop_entry=False)
    g.hold(30000, 500)
    assert g.ctrl.state == "on_platform"  # settling
    with pytest.raises(OperatorRefused, match="on_platform"):
        g.send(Operator("manual_barrier_up", "张三", "司机要求"))
    g.hold(30000, 3000)
    assert g.ctrl.state == "identify"  # waiting for a plate
    with pytest.raises(OperatorRefused, match="identify"):
        g.send(Operator("manual_barrier_up", "张三", "司机要求"))
    assert not g.barrier_up and not g.bodies("override") and not g.bodies("weighing")


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_overloaded_truck_is_never_released_by_hand(role: str) -> None:
    g = Gate()
    g.drive_on(26000, PLATE, axles=3)
    g.hold(26000, 3000)
    assert g.ctrl.state == "held" and g.bodies("weighing")[0]["reasons"] == ["overload"]
    with pytest.raises(OperatorRefused, match="超载.*overloaded"):
        g.send(Operator("manual_barrier_up", "张三", "司机要求", role=role))
    assert not g.barrier_up and not g.bodies("override")


def test_voided_weighing_is_not_released_by_hand() -> None:
    g = Gate()
    g.drive_on(15800, PLATE, axles=None)  # 2-axle limit 18 t: fine; held below by the void
    g.hold(15800, 3000)
    assert g.barrier_up
    g.send(Operator("void", "李四", "称错了"))
    assert not g.barrier_up and g.ctrl.state == "held"
    with pytest.raises(OperatorRefused, match="voided"):
        g.send(Operator("manual_barrier_up", "李四", "放行"))


def test_hand_release_of_a_held_weighed_truck_records_who_and_why() -> None:
    g = Gate(ticket_required=True, identify_timeout_ms=3000)
    g.drive_on(15000, PLATE)
    g.hold(15000, 3000)
    assert g.barrier_up  # the tare pass needs no ticket
    g.drive_off(15000)
    g.hold(0, 1000)
    g.drive_on(49000, PLATE)
    g.hold(49000, 8000)
    assert g.ctrl.state == "held" and g.bodies("weighing")[-1]["reasons"] == ["no_ticket"]
    g.send(Operator("manual_barrier_up", "王五", "票据系统故障，电话核实", role="supervisor"))
    ov = g.bodies("override")[-1]
    assert ov == {"txn": g.bodies("weighing")[-1]["txn"], "action": "manual_barrier_up",
                  "operator": "王五", "role": "supervisor", "reason": "票据系统故障，电话核实",
                  "plate": PLATE, "reasons": ["no_ticket"], "flags": []}
    assert g.barrier_up and g.bodies("barrier")[-1]["cause"] == "override"
    g.drive_off(49000)
    assert g.ctrl.state == "idle" and g.bodies("passage")[-1]["released"] is True


def test_override_bodies_carry_the_role() -> None:
    g = Gate()
    g.drive_on(15000, None)
    g.hold(15000, 30_000)
    g.send(Operator("manual_plate", "张三", "车牌污损", plate="陕K12345"))
    ov = g.bodies("override")[0]
    assert ov["role"] == "operator" and ov["action"] == "manual_plate"
    assert set(ov) == {"txn", "action", "operator", "role", "reason", "plate", "read_plate",
                       "read_conf_pm"}


# -- open_lane: supervisors only, recorded, alarmed, closes again -------------------------------


def test_open_lane_is_for_supervisors_only() -> None:
    g = Gate()
    with pytest.raises(OperatorRefused, match="supervisor"):
        g.send(Operator("open_lane", "张三", "检修车辆通过"))
    assert not g.barrier_up and not g.bodies("override")


def test_open_lane_is_recorded_alarmed_and_closes_by_itself() -> None:
    g = Gate(open_lane_ms=30_000)
    g.send(Operator("open_lane", "赵班长", "检修车辆通过", **SUP))
    assert g.barrier_up
    assert g.bodies("override") == [{"txn": None, "action": "open_lane", "operator": "赵班长",
                                     "role": "supervisor", "reason": "检修车辆通过"}]
    alarm = g.bodies("alarm")[0]
    assert alarm["code"] == "lane_opened_by_hand" and alarm["detail"]["operator"] == "赵班长"
    assert g.bodies("barrier")[-1] == {"txn": None, "action": "up", "cause": "open_lane"}
    g.tick(29_000)
    assert g.barrier_up
    g.tick(1_500)
    assert not g.barrier_up and g.bodies("barrier")[-1]["cause"] == "open_lane"


def test_open_lane_closes_behind_a_vehicle_that_passes() -> None:
    g = Gate()
    g.send(Operator("open_lane", "赵班长", "检修车辆通过", **SUP))
    g.set_io(loop_exit=True)  # a light vehicle (below min_vehicle_kg) drives through
    assert not g.barrier_up
    assert g.bodies("passage") == [{"txn": None, "direction": "exit", "released": False,
                                    "open_lane": True}]
    assert "escape" not in g.alarms()


def test_open_lane_refused_with_a_truck_on_the_scale() -> None:
    g = Gate()
    g.drive_on(30000, None)
    with pytest.raises(OperatorRefused, match="not empty"):
        g.send(Operator("open_lane", "赵班长", "放行", **SUP))


def test_truck_cannot_drive_on_and_out_through_an_open_lane_without_an_alarm() -> None:
    g = Gate(ticket_required=True)
    g.send(Operator("open_lane", "赵班长", "检修车辆通过", **SUP))
    assert g.barrier_up
    g.set_io(loop_entry=True, ir_entry=True)
    g.ramp(0, 30000, 1000)
    assert not g.barrier_up  # a vehicle on the scale closes the lane
    g.set_io(ir_entry=False, loop_entry=False, ir_exit=True)
    g.ramp(30000, 0, 1000)  # straight on out (through the closing arm)
    g.set_io(loop_exit=True)
    g.set_io(ir_exit=False, loop_exit=False)
    assert "escape" in g.alarms() and not g.bodies("weighing")
    assert g.bodies("passage")[-1]["released"] is False


# -- a forced barrier is commanded down at once, and again until it is down --------------------


def test_barrier_raised_behind_the_gates_back_is_lowered_at_once_and_again() -> None:
    g = Gate()
    n = len(g.actions)
    g.set_io(barrier_down=False)  # relay pulsed by hand, lane empty: the arm starts to rise
    assert barrier_cmds(g, n) == [False]  # the same event answers it: down
    assert "barrier_forced" in g.alarms()
    assert g.bodies("barrier")[-1] == {"txn": None, "action": "down", "cause": "forced"}
    g.set_io(barrier_up=True)  # the controller keeps raising it: the gate keeps saying down
    for _ in range(40):
        g.tick(100)
    repeats = barrier_cmds(g, n)
    assert len(repeats) >= 4 and not any(repeats)  # retried with back-off, never up
    assert len(g.bodies("barrier")) == 1  # the ledger gets one entry, not one per retry
    g.set_io(barrier_up=False, barrier_down=True)  # the feedback agrees at last
    m = len(g.actions)
    for _ in range(50):
        g.tick(100)
    assert barrier_cmds(g, m) == []
    assert g.alarms().count("barrier_forced") == 1


def test_next_truck_after_a_forced_barrier_cannot_leave_unweighed() -> None:
    g = Gate(ticket_required=True, identify_timeout_ms=5000)
    g.set_io(barrier_down=False, barrier_up=True)  # forced up, lane empty
    g.tick(100)
    g.set_io(barrier_up=False, barrier_down=True)  # lowered by the gate's command
    # A truck without a ticket drives on, is weighed and held.
    g.drive_on(15000, PLATE)
    g.hold(15000, 3000)
    assert g.barrier_up  # the tare pass of the two-pass site
    g.drive_off(15000)
    g.hold(0, 3000)
    g.drive_on(49000, PLATE)
    g.hold(49000, 8000)
    assert g.ctrl.state == "held" and g.bodies("weighing")[-1]["reasons"] == ["no_ticket"]
    assert not g.barrier_up
    # Someone pulses the relay again: down again at once, and an escape if it drives out.
    n = len(g.actions)
    g.set_io(barrier_down=False)
    assert barrier_cmds(g, n) == [False]
    weighings = len(g.bodies("weighing"))
    g.set_io(ir_exit=True)
    g.ramp(49000, 0, 1000)
    g.set_io(loop_exit=True)
    g.set_io(ir_exit=False, loop_exit=False)
    g.hold(0, 3000)
    assert "escape" in g.alarms() and len(g.bodies("weighing")) == weighings
    assert g.ctrl.state == "idle"


def test_no_weighing_is_written_for_a_truck_that_has_left() -> None:
    # Issue 12: a truck waiting for its ticket drove out through a forced barrier and a
    # weight_jump weighing was written after it had left.
    g = Gate(ticket_required=True, identify_timeout_ms=20_000)
    g.drive_on(15000, PLATE)
    g.hold(15000, 3000)
    g.drive_off(15000)
    g.hold(0, 3000)
    g.drive_on(49000, PLATE)
    g.hold(49000, 3000)
    assert g.ctrl.state == "identify" and len(g.bodies("weighing")) == 1
    g.set_io(barrier_down=False, barrier_up=True)
    g.set_io(ir_exit=True)
    g.ramp(49000, 0, 1000)
    g.set_io(loop_exit=True)
    g.set_io(ir_exit=False, loop_exit=False)
    g.hold(0, 3000)
    assert len(g.bodies("weighing")) == 1  # only the tare pass
    assert "escape" in g.alarms() and "weight_jump" not in g.alarms()
    assert g.ctrl.state == "idle"


# -- the stuck gate -----------------------------------------------------------------------------


def test_stuck_gate_sequence_ends_idle_and_weighs_the_next_truck() -> None:
    """Issue 12, item 8: an honest truck flagged weight_jump while driving off (the IO poll
    lagging the scale), the next truck waiting in the entry beam, a hand release: the old
    controller stayed at 已放行 / 0 kg and never weighed again."""
    g = Gate()
    released_truck(g)
    g.ramp(30000, 15000, 500)  # driving off, the exit beam not reported yet
    assert "weight_jump" in g.alarms() and g.ctrl.state == "held" and not g.barrier_up
    g.set_io(loop_entry=True, ir_entry=True)  # the next truck noses into the entry beam
    g.set_io(ir_exit=True, loop_exit=True)
    g.ramp(15000, 0, 1000)
    g.set_io(ir_exit=False)
    g.set_io(loop_exit=False)
    g.hold(0, 300)
    g.send(Operator("manual_barrier_up", "张三", "车已驶离，误报跳变"))
    g.hold(0, 3000)
    assert g.ctrl.state == "idle" and not g.barrier_up
    g.send(PlateRead("蒙A40004", 950, axles=6))
    g.ramp(0, 24000, 1000)
    g.set_io(ir_entry=False, loop_entry=False)
    g.hold(24000, 3000)
    w = g.bodies("weighing")
    assert w[-1]["plate"] == "蒙A40004" and w[-1]["decision"] == "release" and g.barrier_up


def test_hand_release_with_the_exit_sensors_already_active_still_ends_idle() -> None:
    g = Gate()
    released_truck(g)
    g.ramp(30000, 20000, 300)
    assert g.ctrl.state == "held"
    g.set_io(ir_exit=True, loop_exit=True)  # the truck stopped at the falling arm
    g.send(Operator("manual_barrier_up", "张三", "车已驶离，误报跳变"))
    g.ramp(20000, 0, 1000)
    g.set_io(ir_exit=False)
    g.hold(0, 300)
    g.set_io(loop_exit=False)
    g.hold(0, 3000)
    assert g.ctrl.state == "idle" and not g.barrier_up


events = st.one_of(
    st.builds(WeightSample, st.sampled_from([0, 0, 20, 15000, 30000, 49000]), st.booleans()),
    st.builds(Inputs, st.booleans(), st.booleans(), st.booleans(), st.booleans(),
              st.booleans(), st.booleans()),
    st.builds(PlateRead, st.sampled_from([PLATE, "陕K99999"]), st.integers(800, 1000),
              axles=st.sampled_from([None, 2, 6])),
    st.builds(TicketScan, st.sampled_from(["CT1:T1:陕K12345:S1:34000", "x"])),
    st.builds(Tick),
    st.builds(DeviceStatus, st.sampled_from(["io", "camera"]), st.booleans()),
    st.builds(Operator, st.sampled_from(["manual_barrier_up", "void", "open_lane",
                                         "manual_plate"]),
              st.just("张三"), st.just("测试"), plate=st.just(PLATE),
              role=st.sampled_from(["operator", "supervisor"])),
)


@given(st.lists(st.tuples(events, st.integers(0, 3000)), max_size=120), st.booleans())
@settings(max_examples=300, deadline=None)
def test_gate_never_stays_busy_on_an_empty_zeroed_platform(
    seq: list[tuple[object, int]], ticket_required: bool
) -> None:
    """Whatever came before (operators included), once the platform is empty and at zero with
    the exit clear, the gate is idle within a bound, its barrier down, and weighs the next
    truck; and no override ever raised the barrier for an overloaded or unweighed truck."""
    g = Gate(ticket_required=ticket_required)
    for ev, dt in seq:
        g.now += dt
        try:
            g.send(ev)  # type: ignore[arg-type]
        except OperatorRefused:
            pass
    for ov in g.bodies("override"):
        if ov["action"] == "manual_barrier_up":
            assert ov["txn"] is not None and not any("overload" in r for r in ov["reasons"])
    # Empty the scene: nothing on the scale, every sensor clear, the arm reported down.
    g.set_io(ir_entry=False, ir_exit=False, loop_entry=False, loop_exit=False,
             barrier_up=False, barrier_down=True)
    bound = g.ctrl.policy.empty_close_ms + g.ctrl.policy.stability_window_ms + 1000
    g.hold(0, bound)
    assert g.ctrl.state == "idle", (g.ctrl.state, g.kinds()[-10:])
    assert g.ctrl.txn is None
    g.tick(g.ctrl.policy.open_lane_ms)  # an open lane has closed by now
    assert not g.barrier_up
