"""The alarm rules are pure: entries, state and a clock reading in; alarm drafts out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from central.rules import Lookups, SiteLiveness, SiteRuleState, evaluate, offline_alarms
from central.settings import RuleSettings
from ledger.entry import ZERO_HASH, Entry, format_ts

T0 = datetime(2026, 11, 28, 4, 0, 0, tzinfo=UTC)
RULES = RuleSettings()


def entry(seq: int, kind: str, body: dict[str, Any], at: datetime | None = None) -> Entry:
    ts = format_ts(at or T0 + timedelta(seconds=seq))
    return Entry(site="S1", seq=seq, ts=ts, kind=kind, body=body, prev=ZERO_HASH)


def weighing(seq: int, **over: Any) -> Entry:
    body: dict[str, Any] = {
        "txn": f"S1-20261128-{seq}", "pass": "gross", "plate": "陕K12345", "plate_conf_pm": 950,
        "plate_source": "anpr", "axles": 6, "weight_kg": 48000, "gross_kg": 48000,
        "tare_kg": 15000, "net_kg": 33000, "tare_source": "measured", "tare_seq": None,
        "ticket_id": "T-1", "limit_kg": 49000, "decision": "release", "reasons": [],
        "stable_ms": 3000, "snapshot_sha256": None,
    }
    body.update(over)
    return entry(seq, "weighing", body)


def run(entries: list[Entry], state: SiteRuleState | None = None,
        lookups: Lookups | None = None, rules: RuleSettings = RULES,
        received_at: datetime = T0 + timedelta(minutes=1)):
    return evaluate(entries, state or SiteRuleState(), lookups or Lookups(), rules, received_at)


def codes(outcome) -> list[str]:
    return [a.code for a in outcome.alarms]


def test_honest_truck_raises_nothing():
    tare = weighing(0, **{"pass": "tare", "weight_kg": 15000, "gross_kg": None,
                          "net_kg": None, "tare_kg": 15000})
    gross = weighing(1, tare_seq=0, txn="S1-20261128-0")
    up = entry(2, "barrier", {"txn": "S1-20261128-0", "action": "up", "cause": "decision"})
    out = entry(3, "passage", {"txn": "S1-20261128-0", "direction": "exit", "released": True})
    down = entry(4, "barrier", {"txn": None, "action": "down", "cause": "timeout"})
    ok = entry(5, "ticket_check", {"txn": "S1-20261128-9", "ticket_id": "T-9", "result": "ok",
                                   "plate": "陕K12345"})
    outcome = run([tare, gross, up, out, down, ok])
    assert outcome.alarms == []
    assert outcome.state.barrier == "down"


def test_overload_is_derived_from_gross_above_limit():
    outcome = run([weighing(7, gross_kg=52000, limit_kg=49000)])
    (alarm,) = outcome.alarms
    assert alarm.code == "overload" and alarm.severity == "critical"
    assert alarm.detail["excess_kg"] == 3000 and alarm.seq == 7
    assert alarm.dedup_key == "txn:S1-20261128-7:overload"
    held = run([weighing(7, gross_kg=52000, limit_kg=49000, decision="hold")])
    assert [a.severity for a in held.alarms] == ["warning"]
    assert run([weighing(7, gross_kg=49000, limit_kg=49000)]).alarms == []


def test_tare_pass_is_never_an_overload_or_missing_ticket():
    tare = weighing(1, **{"pass": "tare", "gross_kg": None, "ticket_id": None, "limit_kg": 1})
    assert run([tare]).alarms == []


def test_no_ticket_follows_the_site_policy():
    bare = weighing(3, ticket_id=None)
    strict = entry(2, "config", {"sha256": "00", "policy": {"ticket_required": True},
                                 "agent_version": "0.1"})
    outcome = run([strict, bare])
    assert codes(outcome) == ["no_ticket"] and outcome.state.ticket_required is True
    # The policy is remembered across batches through the state.
    assert codes(run([weighing(4, ticket_id=None)], state=outcome.state)) == ["no_ticket"]
    relaxed = entry(5, "config", {"sha256": "01", "policy": {"ticket_required": False},
                                  "agent_version": "0.1"})
    assert run([relaxed, weighing(6, ticket_id=None)], state=outcome.state).alarms == []
    # Before a site has said anything, the configured default applies.
    assert run([bare]).alarms == []
    assert codes(run([bare], rules=RuleSettings(ticket_required_default=True))) == ["no_ticket"]


def test_invalid_and_wrong_plate_tickets():
    forged = entry(1, "ticket_check", {"txn": "S1-x-1", "ticket_id": "T-5",
                                       "result": "bad_signature", "plate": "陕K1"})
    expired = entry(2, "ticket_check", {"txn": "S1-x-2", "ticket_id": "T-6",
                                        "result": "expired", "plate": "陕K1"})
    swapped = entry(3, "ticket_check", {"txn": "S1-x-3", "ticket_id": "T-7",
                                        "result": "wrong_plate", "plate": "陕K1"})
    outcome = run([forged, expired, swapped])
    assert [(a.code, a.severity, a.detail["result"]) for a in outcome.alarms] == [
        ("invalid_ticket", "critical", "bad_signature"),
        ("invalid_ticket", "warning", "expired"),
        ("plate_mismatch", "critical", "wrong_plate"),
    ]


def test_plate_swap_between_tare_and_gross():
    tare = weighing(10, **{"pass": "tare", "plate": "陕K11111", "gross_kg": None})
    gross = weighing(11, plate="陕K22222", tare_seq=10)
    (alarm,) = run([tare, gross]).alarms
    assert alarm.code == "plate_mismatch"
    assert alarm.detail["tare_plate"] == "陕K11111" and alarm.detail["tare_seq"] == 10
    # The tare may have arrived in an earlier batch: the projection passes it as a lookup.
    later = run([gross], lookups=Lookups(tare_plates={10: "陕K11111"}))
    assert codes(later) == ["plate_mismatch"]
    assert run([gross], lookups=Lookups(tare_plates={10: "陕K22222"})).alarms == []


def test_tare_out_of_band_against_the_plates_history():
    history = Lookups(tare_history={"陕K12345": [15000, 15100, 14900]})
    light = weighing(5, **{"pass": "tare", "weight_kg": 15600, "gross_kg": None})
    assert run([light], lookups=history).alarms == []
    heavy = weighing(6, **{"pass": "tare", "weight_kg": 17000, "gross_kg": None})
    (alarm,) = run([heavy], lookups=history).alarms
    assert alarm.code == "tare_out_of_band"
    assert alarm.detail["median_kg"] == 15000 and alarm.detail["tare_kg"] == 17000
    # Too little history: no judgement yet.
    assert run([heavy], lookups=Lookups(tare_history={"陕K12345": [15000]})).alarms == []


def test_tare_history_accumulates_within_a_batch():
    tares = [weighing(i, **{"pass": "tare", "weight_kg": 15000 + i, "gross_kg": None})
             for i in range(3)]
    cheat = weighing(3, **{"pass": "tare", "weight_kg": 12000, "gross_kg": None})
    assert codes(run([*tares, cheat])) == ["tare_out_of_band"]


def test_escape_and_forced_barrier_from_passage():
    down = entry(1, "barrier", {"txn": None, "action": "down", "cause": "timeout"})
    rush = entry(2, "passage", {"txn": None, "direction": "exit", "released": False})
    outcome = run([down, rush])
    assert codes(outcome) == ["escape", "barrier_forced"]
    assert all(a.severity == "critical" for a in outcome.alarms)
    # An entry-direction passage, or a released exit, is not an escape.
    fine = [entry(3, "passage", {"txn": None, "direction": "entry", "released": False}),
            entry(4, "passage", {"txn": "S1-a-1", "direction": "exit", "released": True})]
    assert run(fine, state=outcome.state).alarms == []


def test_gate_alarm_is_mirrored_and_merged_with_the_derived_one():
    rush = entry(20, "passage", {"txn": None, "direction": "exit", "released": False})
    gate = entry(21, "alarm", {"code": "escape", "severity": "critical", "txn": None,
                               "detail": {"loop": "exit"}})
    derived, mirrored = run([rush, gate]).alarms
    assert derived.dedup_key == mirrored.dedup_key == "seq:20:escape"
    assert mirrored.detail["source"] == "gate" and mirrored.detail["loop"] == "exit"
    # Across batches too, through the state; and a second escape later is a new alarm.
    first = run([rush])
    second = run([gate], state=first.state)
    assert second.alarms[0].dedup_key == "seq:20:escape"
    again = entry(60, "passage", {"txn": None, "direction": "exit", "released": False})
    assert run([again], state=second.state).alarms[0].dedup_key == "seq:60:escape"


def test_gate_alarm_the_central_cannot_derive_is_still_raised():
    gate = entry(3, "alarm", {"code": "second_vehicle", "severity": "warning",
                              "txn": "S1-x-3", "detail": {}})
    (alarm,) = run([gate]).alarms
    assert (alarm.code, alarm.severity, alarm.txn) == ("second_vehicle", "warning", "S1-x-3")
    assert alarm.dedup_key == "txn:S1-x-3:second_vehicle"


def test_clock_ahead_of_arrival_is_skew_once_per_episode():
    now = T0
    ahead = [entry(i, "device", {"device": "scale", "state": "online", "detail": {}},
                   at=now + timedelta(minutes=10, seconds=i)) for i in range(3)]
    outcome = run(ahead, received_at=now)
    assert codes(outcome) == ["clock_skew"] and outcome.alarms[0].detail["ahead_s"] >= 600
    assert outcome.state.skewed
    # Fixed clock: no alarm, and the next skew is a new episode.
    fixed = entry(3, "device", {"device": "scale", "state": "online", "detail": {}}, at=now)
    later = run([fixed], state=outcome.state, received_at=now)
    assert later.alarms == [] and not later.state.skewed


def test_backlog_from_days_offline_is_not_skew():
    old = [entry(i, "device", {"device": "scale", "state": "online", "detail": {}},
                 at=T0 + timedelta(seconds=i)) for i in range(3)]
    assert run(old, received_at=T0 + timedelta(days=3)).alarms == []


def test_clock_jumping_back_is_skew():
    a = entry(1, "device", {"device": "x", "state": "online", "detail": {}}, at=T0)
    b = entry(2, "device", {"device": "x", "state": "online", "detail": {}},
              at=T0 - timedelta(hours=1))
    (alarm,) = run([a, b], received_at=T0).alarms
    assert alarm.code == "clock_skew" and alarm.detail["behind_s"] == 3600


def test_state_round_trips_through_json():
    rush = entry(20, "passage", {"txn": None, "direction": "exit", "released": False})
    state = run([entry(1, "barrier", {"txn": None, "action": "down", "cause": "timeout"}),
                 rush]).state
    assert SiteRuleState.from_json(state.to_json()) == state
    assert SiteRuleState.from_json(None) == SiteRuleState()


def test_malformed_bodies_never_raise():
    odd = [entry(1, "weighing", {"pass": "gross", "gross_kg": "heavy", "limit_kg": True,
                                 "ticket_id": "T"}),
           entry(2, "passage", {}), entry(3, "alarm", {"code": 5}),
           entry(4, "config", {"policy": "strict"}), entry(5, "unknown_kind", {})]
    assert run(odd).alarms == []


def test_site_offline_after_the_configured_silence():
    rules = RuleSettings(offline_after_s=300)
    now = T0 + timedelta(hours=1)
    views = [
        SiteLiveness("quiet", last_seen=now - timedelta(seconds=301), enrolled_at=T0),
        SiteLiveness("alive", last_seen=now - timedelta(seconds=299), enrolled_at=T0),
        SiteLiveness("never", last_seen=None, enrolled_at=T0),
        SiteLiveness("new", last_seen=None, enrolled_at=now - timedelta(seconds=10)),
    ]
    drafts = offline_alarms(views, now, rules)
    assert [d.site for d in drafts] == ["quiet", "never"]
    assert drafts[0].detail["silent_s"] == 301
    # Sweeping again names the same silence, so it dedups to the same alarm.
    later = {d.site: d.dedup_key for d in offline_alarms(views, now + timedelta(minutes=5), rules)}
    assert [later[d.site] for d in drafts] == [d.dedup_key for d in drafts]


def test_escape_names_the_truck_from_its_weighing():
    gross = weighing(1, txn="S1-x-1", plate="陕K77777", decision="hold")
    rush = entry(2, "passage", {"txn": "S1-x-1", "direction": "exit", "released": False})
    (alarm,) = run([gross, rush]).alarms
    assert alarm.code == "escape" and alarm.detail["plate"] == "陕K77777"
    # The weighing may be in an earlier batch: the projection looks the plate up.
    later = run([rush], lookups=Lookups(txn_plates={"S1-x-1": "陕K77777"}))
    assert later.alarms[0].detail["plate"] == "陕K77777"
