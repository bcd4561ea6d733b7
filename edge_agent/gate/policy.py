"""Site policy for the gate: limits, tolerances and timings. Pure data with defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Road gross-weight limits by axle count (DESIGN.md §5); 6 means "6 or more".
DEFAULT_AXLE_LIMITS_KG: dict[int, int] = {2: 18000, 3: 25000, 4: 31000, 5: 43000, 6: 49000}


@dataclass(frozen=True)
class GatePolicy:
    site_id: str
    # two_pass: tare in, gross out. one_pass: gross against a stored (or registered) tare.
    # auto: pair with an open tare when there is one, else use a stored tare, else measure.
    mode: Literal["two_pass", "one_pass", "auto"] = "two_pass"
    ticket_required: bool = False
    axle_limits_kg: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_AXLE_LIMITS_KG))
    # Unknown axle count: None = assume the smallest limit in the table (fails closed).
    default_axles: int | None = None
    net_tolerance_pct: float = 5.0  # ticket planned net ± this percent …
    net_tolerance_kg: int = 500  # … or ± this many kg, whichever is larger
    tare_band_pct: float = 3.0  # tare vs median of the truck's history: ± this percent …
    tare_band_kg: int = 300  # … or ± this many kg, whichever is larger
    tare_history_min: int = 1  # history entries needed before the band applies
    tare_expiry_h: float = 72.0  # one-pass: a stored tare older than this is not used
    open_tare_expiry_h: float = 24.0  # two-pass: a tare waits this long for its gross pass
    e_kg: int = 20
    stability_window_ms: int = 2000
    zero_band_kg: int = 100
    min_vehicle_kg: int = 1000  # below this the platform counts as empty for arrival
    min_load_kg: int = 3000  # one-pass: less than this over the known tare = an empty truck
    jump_kg: int = 500  # after a stable reading, a change beyond this with no beam event
    second_vehicle_kg: int = 2000  # weight gained while the entry beam is re-blocked
    unstable_timeout_ms: int = 30_000
    beam_grace_ms: int = 5_000  # stable but a beam still blocked this long -> alarm
    identify_timeout_ms: int = 20_000  # plate/ticket wait after stable before holding
    # A plate read below this confidence (per mille) is only a candidate: the operator is
    # asked to confirm or type the plate (an audited override).
    plate_min_conf_pm: int = 900
    # The gate PC reads plates itself: wait for its read (up to identify_timeout_ms) even when
    # a pushed ANPR plate came first, so a swapped front plate is compared, not skipped.
    await_reader: bool = False
    confirm_ms: int = 0  # extra stable time before deciding (jammer guard)
    release_timeout_ms: int = 120_000  # barrier up but no exit within this -> down
    # A supervisor's open_lane closes again after this long (or as soon as a vehicle comes on
    # the platform or passes the exit loop).
    open_lane_ms: int = 60_000
    # Platform empty (at zero, both beams and the exit loop clear) this long: whatever the
    # transaction's phase, the truck is gone; the gate closes it and waits for the next one.
    empty_close_ms: int = 2_000
    # An uncommanded barrier-up is answered at once with "down", repeated after these delays
    # (the last one repeating) until the feedback says down.
    forced_retry_ms: tuple[int, ...] = (100, 200, 400, 800, 1600, 2500)
    device_timeout_ms: int = 3_000  # no scale sample this long -> scale offline
    utc_offset_h: int = 8  # transaction ids use the site's local date

    def limit_for(self, axles: int | None) -> int:
        table = self.axle_limits_kg
        if axles is None:
            axles = self.default_axles
        if axles is None:
            return min(table.values())
        eligible = [a for a in table if a <= axles]
        return table[max(eligible)] if eligible else min(table.values())

    def net_tolerance(self, planned_kg: int) -> int:
        return max(self.net_tolerance_kg, int(planned_kg * self.net_tolerance_pct / 100))

    def tare_band(self, median_kg: int) -> int:
        return max(self.tare_band_kg, int(median_kg * self.tare_band_pct / 100))
