"""The gate: events in, actions out (pure), plus the rules and memory it decides with."""

from __future__ import annotations

from edge_agent.gate.book import TareRecord, VehicleBook
from edge_agent.gate.controller import GateController
from edge_agent.gate.events import (
    Action,
    Barrier,
    DeviceStatus,
    Event,
    Inputs,
    MarkTicketUsed,
    Operator,
    PlateRead,
    Record,
    Recorded,
    Signals,
    Tick,
    TicketScan,
    WeightSample,
)
from edge_agent.gate.overrides import OperatorRefused
from edge_agent.gate.policy import DEFAULT_AXLE_LIMITS_KG, GatePolicy
from edge_agent.gate.state import TicketVerifier
from edge_agent.gate.txn import RecoveredTxn

__all__ = [
    "DEFAULT_AXLE_LIMITS_KG",
    "Action",
    "Barrier",
    "DeviceStatus",
    "Event",
    "GateController",
    "GatePolicy",
    "Inputs",
    "MarkTicketUsed",
    "Operator",
    "OperatorRefused",
    "PlateRead",
    "Record",
    "Recorded",
    "RecoveredTxn",
    "Signals",
    "TareRecord",
    "TicketScan",
    "TicketVerifier",
    "Tick",
    "VehicleBook",
    "WeightSample",
]
