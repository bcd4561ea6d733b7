"""Plates in the gate, pure parts: attribution of late reads (the hand-off bug), the identify
timeout that always holds, the operator's plate prompt, the ANPR push adapter, MJPEG splitting."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from edge_agent.camera import MjpegSplitter, keep_snapshot, snapshot_path
from edge_agent.console.anpr import AnprFormatError, parse_anpr
from edge_agent.gate import Operator, OperatorRefused, PlateRead
from tests.edge.gate_harness import Gate

A, B = "陕K12345", "晋B30002"


def gate(**policy: Any) -> Gate:
    return Gate(default_axles=6, **policy)


def a_on_platform_b_on_the_loop(g: Gate) -> tuple[str, int]:
    """Truck A drives on with no plate read yet; then truck B reaches the entry loop."""
    g.drive_on(30000, None)
    g.hold(30000, 500)
    txn = g.ctrl.snapshot()["txn"]
    before_b = g.now
    g.now += 100
    g.set_io(loop_entry=True)  # B arrives and waits
    return txn, before_b


def b_drives_on_after_a_leaves(g: Gate) -> None:
    g.set_io(ir_exit=True)
    g.ramp(30000, 15000, 1000)
    g.set_io(loop_exit=True)
    g.ramp(15000, 0, 1000)
    g.set_io(ir_exit=False)
    g.hold(0, 500)
    g.set_io(loop_exit=False)
    g.hold(0, 500)
    g.set_io(ir_entry=True)
    g.ramp(0, 20000, 1000)
    g.set_io(loop_entry=False)
    g.set_io(ir_entry=False)
    g.hold(20000, 3000)


def test_late_reader_plate_goes_to_the_truck_on_the_platform_not_the_next() -> None:
    g = gate()
    txn, before_b = a_on_platform_b_on_the_loop(g)
    g.hold(30000, 2000)
    assert g.ctrl.state == "identify" and not g.barrier_up
    # The reader's frames were taken before B arrived; the result lands after.
    g.send(PlateRead(A, 960, "reader", snapshot_sha256="ab" * 32, seen_ms=before_b, txn=txn))
    w = g.bodies("weighing")
    assert len(w) == 1 and w[0]["plate"] == A and g.barrier_up
    assert (w[0]["plate_conf_pm"], w[0]["plate_source"], w[0]["snapshot_sha256"]) == (
        960, "reader", "ab" * 32)
    assert g.ctrl.last_plates == []  # nothing handed to the next truck
    b_drives_on_after_a_leaves(g)
    assert g.ctrl.state == "identify" and g.ctrl.snapshot()["plate"] is None


def test_late_anpr_push_with_its_capture_time_goes_to_the_platform_truck() -> None:
    g = gate()
    _, before_b = a_on_platform_b_on_the_loop(g)
    g.hold(30000, 2000)
    g.send(PlateRead(A, 990, "anpr", seen_ms=before_b))
    assert g.bodies("weighing")[0]["plate"] == A and g.barrier_up
    g.send(PlateRead(B, 990, "anpr", seen_ms=g.now))  # B's own push, taken after it arrived
    b_drives_on_after_a_leaves(g)
    assert [w["plate"] for w in g.bodies("weighing")] == [A, B]


def test_ambiguous_late_push_is_only_a_candidate_and_the_operator_decides() -> None:
    g = gate()
    a_on_platform_b_on_the_loop(g)
    g.hold(30000, 2000)
    g.send(PlateRead(A, 990, "anpr"))  # no capture time: A's late read or B's? Never guess.
    snap = g.ctrl.snapshot()
    assert snap["plate"] is None and snap["plate_prompt"]
    assert snap["plate_candidate"]["plate"] == A and snap["plate_candidate"]["conf_pm"] < 900
    assert not g.bodies("weighing") and not g.barrier_up and g.ctrl.last_plates == []
    g.hold(30000, 20_000)
    assert g.ctrl.state == "held" and g.alarms() == ["plate_unread"]
    detail = g.bodies("alarm")[0]["detail"]
    assert detail["candidate"] == A and detail["candidate_conf_pm"] == 899
    g.send(Operator("manual_plate", "张三", "核对车辆，确认车牌", plate=A))
    ov = g.bodies("override")[0]
    assert (ov["plate"], ov["read_plate"], ov["read_conf_pm"]) == (A, A, 899)
    assert g.bodies("weighing")[0]["plate_source"] == "manual" and g.barrier_up


def test_reader_frames_taken_after_the_next_truck_arrived_are_dropped() -> None:
    g = gate()
    txn, _ = a_on_platform_b_on_the_loop(g)
    g.send(PlateRead(B, 980, "reader", seen_ms=g.now, txn=txn))  # the camera saw B
    g.hold(30000, 25_000)
    assert g.ctrl.snapshot()["plate"] is None and g.ctrl.state == "held"
    assert "plate_unread" in g.alarms() and not g.bodies("weighing") and not g.barrier_up


def test_read_for_a_finished_transaction_changes_nothing() -> None:
    g = gate()
    g.drive_on(30000, A)
    g.hold(30000, 3000)
    assert g.barrier_up
    txn = g.bodies("weighing")[0]["txn"]
    g.send(PlateRead(B, 990, "reader", txn=txn))
    g.send(PlateRead(B, 990, "reader", txn="S1-19990101-1"))
    assert len(g.bodies("weighing")) == 1 and g.ctrl.last_plates == []


def test_identify_always_times_out_into_a_hold_with_an_alarm() -> None:
    """The old controller waited in identify for ever when no plate came (no alarm)."""
    g = gate(identify_timeout_ms=5000)
    g.drive_on(30000, None)
    g.hold(30000, 3000)
    assert g.ctrl.state == "identify" and g.alarms() == []
    g.hold(30000, 5000)
    assert g.ctrl.state == "held" and g.alarms() == ["plate_unread"]
    assert g.ctrl.snapshot()["decision"]["reasons"] == ["plate_unread"]
    assert not g.barrier_up and not g.bodies("weighing")


def test_low_confidence_read_prompts_the_operator_and_never_releases() -> None:
    g = gate()
    g.drive_on(30000, None)
    g.send(PlateRead(A, 870, "reader", txn=g.ctrl.snapshot()["txn"]))
    g.hold(30000, 3000)
    snap = g.ctrl.snapshot()
    assert snap["plate_prompt"] and snap["plate"] is None and not g.barrier_up
    g.hold(30000, 20_000)
    assert g.alarms() == ["plate_unread"] and g.ctrl.state == "held"
    # A credible read arriving late resumes the held truck (it was held only for its plate).
    g.send(PlateRead(A, 950, "reader", txn=snap["txn"]))
    assert g.bodies("weighing")[0]["plate"] == A and g.barrier_up


def test_threshold_is_policy() -> None:
    g = gate(plate_min_conf_pm=800)
    g.drive_on(30000, None)
    g.send(PlateRead(A, 870, "reader", txn=g.ctrl.snapshot()["txn"]))
    g.hold(30000, 3000)
    assert g.barrier_up and g.bodies("weighing")[0]["plate_conf_pm"] == 870


def test_manual_plate_is_validated_and_audited() -> None:
    g = gate()
    g.drive_on(30000, None)
    g.hold(30000, 25_000)
    for bad in ("陕KO1234", "ABC", "陕K123"):
        with pytest.raises(OperatorRefused, match="not a valid plate"):
            g.send(Operator("manual_plate", "张三", "车牌污损", plate=bad))
    assert not g.bodies("override")
    g.send(Operator("manual_plate", "张三", "车牌污损", plate="陕 k-12345"))
    assert g.bodies("override")[0]["plate"] == A and g.bodies("weighing")[0]["plate"] == A


def test_held_for_another_reason_stays_held_after_a_manual_plate() -> None:
    g = gate()
    g.set_io(loop_entry=True)
    g.send(PlateRead(A, 950))
    g.set_io(ir_entry=True)
    g.send(PlateRead(B, 950))
    g.ramp(0, 38000, 2000)
    g.hold(38000, 8000)
    assert g.ctrl.state == "held"
    g.send(Operator("manual_plate", "张三", "核对", plate=A))
    assert g.ctrl.state == "held" and not g.barrier_up


# ------------------------------------------------------------------ ANPR push adapter
VZ = {"AlarmInfoPlate": {"channel": 0, "deviceName": "cam", "serialno": "x", "result": {
    "PlateResult": {"license": "晋B·30002", "colorType": 2, "confidence": 97, "type": 1,
                    "location": {"RECT": {"left": 1, "top": 2, "right": 3, "bottom": 4}},
                    "timeStamp": {"Timeval": {"sec": 1795000000, "usec": 250000}}}}}}


def test_vzenith_push_is_adapted() -> None:
    p = parse_anpr(VZ)
    assert (p.plate, p.conf_pm, p.camera, p.seen_ms) == (B, 970, "front", 1795000000250)


def test_simulator_push_is_adapted() -> None:
    from firmware_sim.camera.render import Conditions, FrameLabel
    from firmware_sim.camera.server import anpr_payload

    label = FrameLabel(plate=A, kind="blue", conditions=Conditions(), seed=1,
                       bbox=(10, 20, 200, 60))
    p = parse_anpr(anpr_payload(label, "sim-1", 1795000000.5))
    assert (p.plate, p.conf_pm, p.seen_ms) == (A, 990, 1795000000500)


def test_simple_push_is_adapted() -> None:
    p = parse_anpr({"plate": "陕K12345", "confidence": 0.97, "camera": "rear", "axles": 6})
    assert (p.plate, p.conf_pm, p.camera, p.axles, p.seen_ms) == (A, 970, "rear", 6, None)


@pytest.mark.parametrize(("payload", "words"), [
    ([1, 2], "JSON object"),
    ({"foo": 1}, "unknown ANPR push (keys: foo)"),
    ({"plate": "陕K12345", "confidence": 97}, "confidence must be a number from 0 to 1"),
    ({"plate": "陕K12345", "colour": "blue"}, "unknown field(s) colour"),
    ({"plate": "_无_"}, "not a valid Chinese plate"),
    ({"AlarmInfoPlate": {"heartbeat": 1}}, "without AlarmInfoPlate.result.PlateResult"),
    ({"AlarmInfoPlate": {"result": {"PlateResult": {"license": "陕K12345",
                                                    "confidence": "high"}}}},
     "PlateResult.confidence must be a number"),
])
def test_anything_else_is_refused_with_a_reason(payload: object, words: str) -> None:
    with pytest.raises(AnprFormatError) as exc:
        parse_anpr(payload)
    assert words in str(exc.value)


# ------------------------------------------------------------------ camera helpers
JPG1 = b"\xff\xd8" + b"frame-one" + b"\xff\xd9"
JPG2 = b"\xff\xd8" + b"frame-two\r\n--not-a-boundary" + b"\xff\xd9"


def mjpeg(parts: list[bytes], length: bool) -> bytes:
    out = b"preamble garbage\r\n"
    for p in parts:
        head = b"--frm\r\nContent-Type: image/jpeg\r\n"
        if length:
            head += b"Content-Length: %d\r\n" % len(p)
        out += head + b"\r\n" + p + b"\r\n"
    return out + b"--frm\r\n"


@pytest.mark.parametrize("length", [True, False])
def test_mjpeg_splitter_whole_and_byte_by_byte(length: bool) -> None:
    stream = mjpeg([JPG1, JPG2, JPG1], length)
    assert MjpegSplitter("frm").feed(stream) == [JPG1, JPG2, JPG1]
    s = MjpegSplitter("--frm")
    got: list[bytes] = []
    for i in range(len(stream)):
        got += s.feed(stream[i:i + 1])
    assert got == [JPG1, JPG2, JPG1]


def test_snapshot_is_kept_under_its_hash(tmp_path: Path) -> None:
    digest = keep_snapshot(tmp_path / "snaps", JPG1)
    assert digest == hashlib.sha256(JPG1).hexdigest()
    assert snapshot_path(tmp_path / "snaps", digest).read_bytes() == JPG1
    assert keep_snapshot(tmp_path / "snaps", JPG1) == digest  # idempotent
    with pytest.raises(ValueError, match="SHA-256"):
        snapshot_path(tmp_path, "../../etc/passwd")


def test_with_its_own_reader_the_gate_waits_for_it_before_deciding() -> None:
    g = gate(await_reader=True)
    g.drive_on(30000, A)  # a pushed ANPR plate came first
    g.hold(30000, 3000)
    assert g.ctrl.state == "identify" and not g.bodies("weighing")
    g.send(PlateRead("陕K99999", 990, "reader", txn=g.ctrl.snapshot()["txn"]))  # swapped front
    w = g.bodies("weighing")[0]
    assert w["decision"] == "hold" and "plate_mismatch" in w["reasons"] and not g.barrier_up


def test_a_silent_reader_delays_the_decision_only_until_the_timeout() -> None:
    g = gate(await_reader=True, identify_timeout_ms=5000)
    g.drive_on(30000, A)
    g.hold(30000, 4000)
    assert not g.bodies("weighing")
    g.hold(30000, 5000)
    assert g.bodies("weighing")[0]["plate"] == A and g.barrier_up
