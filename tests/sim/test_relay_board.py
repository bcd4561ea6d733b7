"""The USB serial relay board emulator: its frame decoder (pure) and the board on its pty."""

from __future__ import annotations

from collections.abc import Callable

import serial

from firmware_sim.relay_board import RelayCommand, RelayDecoder, relay_frame
from tests.sim.conftest import SimThread, wait_for

ON_1 = bytes([0xA0, 0x01, 0x01, 0xA2])  # the LCUS-1 datasheet's "open relay" example
OFF_1 = bytes([0xA0, 0x01, 0x00, 0xA1])


def test_frame_layout_matches_the_board_documentation() -> None:
    assert relay_frame(1, True) == ON_1
    assert relay_frame(1, False) == OFF_1
    assert relay_frame(2, True) == bytes.fromhex("A0 02 01 A3")
    assert relay_frame(8, False) == bytes.fromhex("A0 08 00 A8")


def test_decoder_whole_frames_halves_and_single_bytes() -> None:
    stream = ON_1 + relay_frame(4, True) + OFF_1
    want = [RelayCommand(1, True), RelayCommand(4, True), RelayCommand(1, False)]
    assert RelayDecoder().feed(stream) == want
    d = RelayDecoder()
    assert d.feed(stream[:6]) + d.feed(stream[6:]) == want
    d = RelayDecoder()
    assert [c for b in stream for c in d.feed(bytes([b]))] == want


def test_decoder_drops_garbage_bad_sums_and_unknown_channels() -> None:
    d = RelayDecoder(channels=4)
    bad_sum = bytes([0xA0, 0x02, 0x01, 0x00])
    unknown = relay_frame(9, True)
    bad_state = bytes([0xA0, 0x01, 0x02]) + bytes([(0xA0 + 1 + 2) & 0xFF])
    got = d.feed(b"\x00\xff junk" + bad_sum + ON_1 + unknown + bad_state + b"\xa0" + OFF_1)
    assert got == [RelayCommand(1, True), RelayCommand(1, False)]
    assert d.bad_sum >= 1 and d.bad_channel == 2 and d.skipped_bytes > 0


def test_header_inside_a_bad_frame_resynchronises() -> None:
    # A stray 0xA0 right before a real frame: the false start fails its sum, the frame survives.
    assert RelayDecoder().feed(b"\xa0" + ON_1) == [RelayCommand(1, True)]


def test_board_on_its_pty_drives_the_gate(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim()
    ep = sim.endpoints["relay"]["usb_relay"]
    assert ep["protocol"] == "lcus-relay" and ep["channels"] == 8
    with serial.Serial(ep["device"], 9600, timeout=0.2) as port:
        port.write(relay_frame(ep["wiring"]["light_red"], True) + relay_frame(1, True))
        wait_for(lambda: sim.sim.site.outputs.light_red, what="the red light on")
        wait_for(lambda: sim.sim.site.barrier.is_up, what="the barrier up")
        port.write(relay_frame(1, False) + relay_frame(2, True))
        wait_for(lambda: sim.sim.site.barrier.is_down, what="the barrier down again")
        assert port.read(16) == b"", "the board never answers"
    board = sim.sim.relay
    assert board is not None and board.closed[2] and not board.closed[1]
