"""Protocol frames, decoded by independent code written from the manuals' byte layouts."""

from __future__ import annotations

import pytest

from firmware_sim.errors import FrameError
from firmware_sim.physics import Reading, ScaleSpec
from firmware_sim.protocols import toledo, xk3190
from firmware_sim.protocols.modbus_maps import (
    STATUS_BITS,
    WEIGHT_REGISTERS,
    int32_words,
    transmitter_registers,
    words_int32,
)


def decode_xk_tf0(frame: bytes) -> tuple[int, int]:
    """Independent decoder: returns (signed display count, decimals); checks STX/ETX/XOR."""
    assert len(frame) == 12
    assert frame[0] == 0x02 and frame[11] == 0x03
    x = 0
    for b in frame[1:9]:
        x ^= b
    hi, lo = x >> 4, x & 0xF
    expect = bytes([hi + (0x30 if hi < 10 else 0x37), lo + (0x30 if lo < 10 else 0x37)])
    assert frame[9:11] == expect
    sign = {ord("+"): 1, ord("-"): -1}[frame[1]]
    return sign * int(frame[2:8].decode()), int(chr(frame[8]))


def test_xk3190_worked_example_from_the_manual() -> None:
    frame = xk3190.encode_tf0(2000, 2)
    assert frame == b"\x02+0020002" + b"1B" + b"\x03"
    # XOR of '+002000' and '2' is 0x1B, sent as the characters '1' and 'B'.
    x = 0
    for ch in b"+0020002":
        x ^= ch
    assert x == 0x1B
    assert decode_xk_tf0(frame) == (2000, 2)


@pytest.mark.parametrize("value,decimals", [(0, 0), (30800, 0), (-140, 0), (999999, 4), (-5, 1)])
def test_xk3190_tf0_round_trips(value: int, decimals: int) -> None:
    assert decode_xk_tf0(xk3190.encode_tf0(value, decimals)) == (value, decimals)


def test_xk3190_nibbles_above_nine_use_letters() -> None:
    assert [xk3190.nibble_ascii(n) for n in (0, 9, 10, 15)] == [ord(c) for c in "09AF"]


@pytest.mark.parametrize("value,decimals", [(1_000_000, 0), (5, 5), (5, -1)])
def test_xk3190_refuses_what_does_not_fit(value: int, decimals: int) -> None:
    with pytest.raises(FrameError):
        xk3190.encode_tf0(value, decimals)


def decode_format2(frame: bytes) -> float:
    text = frame.decode("ascii")
    assert text[0] == "=" and text[-1] in "+-"
    return float(text[1:-1][::-1]) * (-1 if text[-1] == "-" else 1)


def test_xk3190_format2_reverses_the_field_with_its_decimal_point() -> None:
    assert xk3190.encode_format2(12345, 0) == b"=543210+"
    assert xk3190.encode_format2(2000, 2) == b"=00.0200+"
    assert decode_format2(xk3190.encode_format2(2000, 2)) == 20.0
    assert decode_format2(xk3190.encode_format2(-1234, 1)) == -123.4


def decode_toledo(frame: bytes) -> dict[str, object]:
    """Independent Toledo decoder; checks the 7-bit two's-complement checksum."""
    assert len(frame) == 18 and frame[0] == 0x02 and frame[16] == 0x0D
    assert sum(frame) & 0x7F == 0, "checksum: 7-bit sum of the whole frame must be 0"
    assert all(b < 0x80 for b in frame)
    swa, swb, swc = frame[1], frame[2], frame[3]
    assert swa & 0x20 and swb & 0x20 and swc & 0x20
    weight = int(frame[4:10])
    return {
        "decimal_code": swa & 0x07,
        "count_by": (swa >> 3) & 0x03,
        "net": bool(swb & 1),
        "negative": bool(swb & 2),
        "out_of_range": bool(swb & 4),
        "motion": bool(swb & 8),
        "kg": bool(swb & 16),
        "weight": -weight if swb & 2 else weight,
        "tare": int(frame[10:16]),
    }


def test_toledo_frame_layout_and_checksum() -> None:
    frame = toledo.encode(30800, 0, 0, 20, toledo.ToledoStatus(motion=False))
    decoded = decode_toledo(frame)
    assert decoded == {
        "decimal_code": 0b010,
        "count_by": 0b10,
        "net": False,
        "negative": False,
        "out_of_range": False,
        "motion": False,
        "kg": True,
        "weight": 30800,
        "tare": 0,
    }
    assert frame[:4] == b"\x02\x32\x30\x20"


def test_toledo_motion_negative_and_net_bits() -> None:
    status = toledo.ToledoStatus(net=True, motion=True, out_of_range=True)
    decoded = decode_toledo(toledo.encode(-60, 15000, 2, 5, status))
    assert decoded["motion"] and decoded["negative"] and decoded["net"] and decoded["out_of_range"]
    assert decoded["weight"] == -60 and decoded["tare"] == 15000
    assert decoded["decimal_code"] == 0b100 and decoded["count_by"] == 0b11


def test_toledo_without_checksum_ends_at_cr() -> None:
    frame = toledo.encode(1, 0, 0, 1, toledo.ToledoStatus(), with_checksum=False)
    assert len(frame) == 17 and frame.endswith(b"\r")


def test_toledo_refuses_bad_division() -> None:
    with pytest.raises(FrameError):
        toledo.encode(1, 0, 0, 3, toledo.ToledoStatus())


@pytest.mark.parametrize("value", [0, 1, -1, 65535, 65536, 100_000, -100_000, 2**31 - 1, -(2**31)])
def test_int32_register_pairs_are_high_word_first(value: int) -> None:
    high, low = int32_words(value)
    assert 0 <= high <= 0xFFFF and 0 <= low <= 0xFFFF
    assert words_int32(high, low) == value
    assert ((high << 16) | low) == value & 0xFFFFFFFF


def test_transmitter_registers_and_status_bits() -> None:
    spec = ScaleSpec()
    reading = Reading(
        t=1.0,
        gross_kg=49000,
        tare_kg=15000,
        stable=True,
        overload=False,
        underload=False,
        centre_of_zero=False,
    )
    regs = transmitter_registers(reading, spec, counter=7)
    gross = WEIGHT_REGISTERS["gross"][0]
    net = WEIGHT_REGISTERS["net"][0]
    assert (regs[gross] << 16 | regs[gross + 1]) == 49000
    assert (regs[net] << 16 | regs[net + 1]) == 34000
    status = regs[WEIGHT_REGISTERS["status"][0]]
    assert status == (1 << STATUS_BITS["stable"]) | (1 << STATUS_BITS["net"])
    assert regs[WEIGHT_REGISTERS["division"][0]] == 20
    assert regs[WEIGHT_REGISTERS["counter"][0]] == 7
    over = Reading(
        t=1.0,
        gross_kg=100_200,
        tare_kg=0,
        stable=False,
        overload=True,
        underload=False,
        centre_of_zero=False,
    )
    status = transmitter_registers(over, spec, 0)[WEIGHT_REGISTERS["status"][0]]
    assert status == 1 << STATUS_BITS["overload"]
