"""What the gate remembers about trucks, rebuilt from the ledger at start (the ledger is the
only durable state): tare history, open two-pass tares, stored one-pass tares, axle counts,
and the last transaction number per local day."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

HISTORY_LEN = 10


@dataclass(frozen=True)
class TareRecord:
    txn: str
    kg: int
    seq: int | None
    at_ms: int


@dataclass
class VehicleBook:
    axles: dict[str, int] = field(default_factory=dict)
    registered_tares: dict[str, int] = field(default_factory=dict)  # 备案皮重 from the config
    tare_history: dict[str, list[TareRecord]] = field(default_factory=dict)
    open_tares: dict[str, TareRecord] = field(default_factory=dict)  # two-pass, awaiting gross
    stored_tares: dict[str, TareRecord] = field(default_factory=dict)  # latest measured tare
    txn_counter: dict[str, int] = field(default_factory=dict)  # local date -> last n
    voided: set[str] = field(default_factory=set)

    def median_tare(self, plate: str) -> tuple[int, int] | None:
        """(median, count) of the plate's recent tares, or None without history."""
        kgs = [r.kg for r in self.tare_history.get(plate, [])]
        registered = self.registered_tares.get(plate)
        if registered is not None:
            kgs.append(registered)  # the registered tare anchors the band from the first visit
        if not kgs:
            return None
        return int(statistics.median(kgs)), len(kgs)

    def add_tare(self, plate: str, rec: TareRecord, *, open_for_gross: bool) -> None:
        hist = self.tare_history.setdefault(plate, [])
        hist.append(rec)
        del hist[:-HISTORY_LEN]
        self.stored_tares[plate] = rec
        if open_for_gross:
            self.open_tares[plate] = rec

    def set_tare_seq(self, txn: str, seq: int) -> None:
        for table in (self.open_tares, self.stored_tares):
            for plate, rec in list(table.items()):
                if rec.txn == txn and rec.seq is None:
                    table[plate] = TareRecord(rec.txn, rec.kg, seq, rec.at_ms)
        for hist in self.tare_history.values():
            hist[:] = [
                TareRecord(r.txn, r.kg, seq, r.at_ms) if r.txn == txn and r.seq is None else r
                for r in hist
            ]

    def close_open_tare(self, plate: str) -> None:
        self.open_tares.pop(plate, None)

    def next_txn(self, site: str, day: str) -> str:
        n = self.txn_counter.get(day, 0) + 1
        self.txn_counter[day] = n
        return f"{site}-{day}-{n}"

    def note_txn(self, txn: str) -> None:
        """Remember a transaction id seen in the ledger so numbering never repeats."""
        parts = txn.rsplit("-", 2)
        if len(parts) == 3 and parts[2].isdigit():
            day, n = parts[1], int(parts[2])
            self.txn_counter[day] = max(self.txn_counter.get(day, 0), n)

    def replay(self, seq: int, kind: str, body: dict[str, Any], at_ms: int) -> None:
        """Fold one ledger entry into the book (called for every entry at start-up)."""
        txn = body.get("txn")
        if isinstance(txn, str):
            self.note_txn(txn)
        if kind == "override" and body.get("action") == "void" and isinstance(txn, str):
            self.voided.add(txn)
            for plate_hist in self.tare_history.values():
                plate_hist[:] = [r for r in plate_hist if r.txn != txn]
            for table in (self.open_tares, self.stored_tares):
                for key, old in list(table.items()):
                    if old.txn == txn:
                        del table[key]
        if kind != "weighing" or not isinstance(txn, str):
            return
        plate = body.get("plate")
        if not isinstance(plate, str):
            return
        if txn in self.voided:
            return
        if isinstance(body.get("axles"), int):
            self.axles.setdefault(plate, body["axles"])
        if body.get("decision") != "release":
            return
        if body.get("pass") == "tare":
            self.add_tare(plate, TareRecord(txn, int(body["weight_kg"]), seq, at_ms),
                          open_for_gross=True)
        elif body.get("pass") in ("gross", "one_pass"):
            self.close_open_tare(plate)
