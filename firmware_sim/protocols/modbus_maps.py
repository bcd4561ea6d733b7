"""Register maps of the weighing transmitter and the gate IO board, and their pure encoders.

Addresses are 0-based protocol addresses. 32-bit values are signed two's complement, high word
first (big-endian word order). ``register_maps()`` is what the endpoints JSON publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firmware_sim.physics import Reading, ScaleSpec

__all__ = [
    "WEIGHT_REGISTERS",
    "STATUS_BITS",
    "COMMAND_REGISTER",
    "COMMANDS",
    "REGISTER_BLOCK_SIZE",
    "COILS",
    "DISCRETE_INPUTS",
    "int32_words",
    "words_int32",
    "transmitter_registers",
    "register_maps",
    "GateInputs",
]

# name -> (address, count, type)
WEIGHT_REGISTERS: dict[str, tuple[int, int, str]] = {
    "gross": (0, 2, "int32"),
    "net": (2, 2, "int32"),
    "status": (4, 1, "uint16"),
    "decimals": (5, 1, "uint16"),
    "division": (6, 1, "uint16"),
    "capacity": (7, 2, "int32"),
    "tare": (9, 2, "int32"),
    "counter": (11, 1, "uint16"),
    "command": (20, 1, "uint16"),
}
STATUS_BITS = {"stable": 0, "overload": 1, "zero": 2, "net": 3, "underload": 4}
COMMAND_REGISTER = WEIGHT_REGISTERS["command"][0]
COMMANDS = {1: "zero", 2: "tare", 3: "clear_tare"}
REGISTER_BLOCK_SIZE = 32

COILS = {"barrier_up": 0, "barrier_down": 1, "light_red": 2, "light_green": 3, "horn": 4}
DISCRETE_INPUTS = {
    "ir_entry": 0,
    "ir_exit": 1,
    "loop_entry": 2,
    "loop_exit": 3,
    "barrier_up_fb": 4,
    "barrier_down_fb": 5,
}


def int32_words(value: int) -> tuple[int, int]:
    """Signed 32-bit value -> (high word, low word)."""
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"{value} does not fit a signed 32-bit register pair")
    u = value & 0xFFFFFFFF
    return u >> 16, u & 0xFFFF


def words_int32(high: int, low: int) -> int:
    u = (high << 16) | low
    return u - 2**32 if u >= 2**31 else u


def transmitter_registers(reading: Reading, spec: ScaleSpec, counter: int) -> list[int]:
    """The first ``COMMAND_REGISTER`` registers for one reading (the command register excluded)."""
    regs = [0] * COMMAND_REGISTER
    status = (
        (1 << STATUS_BITS["stable"] if reading.stable else 0)
        | (1 << STATUS_BITS["overload"] if reading.overload else 0)
        | (1 << STATUS_BITS["zero"] if reading.centre_of_zero else 0)
        | (1 << STATUS_BITS["net"] if reading.net_mode else 0)
        | (1 << STATUS_BITS["underload"] if reading.underload else 0)
    )
    values = {
        "gross": spec.to_display(reading.gross_kg),
        "net": spec.to_display(reading.net_kg),
        "capacity": spec.to_display(spec.capacity_kg),
        "tare": spec.to_display(reading.tare_kg),
    }
    for name, value in values.items():
        address = WEIGHT_REGISTERS[name][0]
        regs[address], regs[address + 1] = int32_words(value)
    regs[WEIGHT_REGISTERS["status"][0]] = status
    regs[WEIGHT_REGISTERS["decimals"][0]] = spec.decimals
    regs[WEIGHT_REGISTERS["division"][0]] = spec.to_display(spec.e_kg)
    regs[WEIGHT_REGISTERS["counter"][0]] = counter & 0xFFFF
    return regs


@dataclass(frozen=True)
class GateInputs:
    ir_entry: bool = False
    ir_exit: bool = False
    loop_entry: bool = False
    loop_exit: bool = False
    barrier_up_fb: bool = False
    barrier_down_fb: bool = True

    def bits(self) -> list[bool]:
        return [bool(getattr(self, name)) for name in DISCRETE_INPUTS]


def register_maps() -> dict[str, Any]:
    """Machine-readable maps for the endpoints JSON."""
    return {
        "weighing_transmitter": {
            "holding_registers": {
                name: {"address": a, "count": c, "type": t}
                for name, (a, c, t) in WEIGHT_REGISTERS.items()
            },
            "input_registers": "same as holding_registers (read-only mirror, command excluded)",
            "word_order": "big",
            "status_bits": STATUS_BITS,
            "commands": {str(k): v for k, v in COMMANDS.items()},
        },
        "gate_io": {
            "coils": COILS,
            "discrete_inputs": DISCRETE_INPUTS,
            "momentary_coils": ["barrier_up", "barrier_down"],
        },
    }
