"""The site model: trucks, barrier, sensors and cheats, on a simulated clock (no sleeps)."""

from __future__ import annotations

from collections.abc import Callable

from firmware_sim.physics import class_iii_mpe_kg
from firmware_sim.scenario import parse_scenario
from firmware_sim.world import Event, GateOutputs, Site, truck_shape

HEAD = '[scenario]\nname = "t"\nseed = 7\n'


def truck(plate: str, axles: int, tare: int, load: int, arrive: float, extra: str = "") -> str:
    return (
        f'\n[[truck]]\nplate = "{plate}"\naxles = {axles}\ntare_kg = {tare}\n'
        f"load_kg = {load}\narrive_s = {arrive}\ndwell_s = 5\n{extra}"
    )


def site_for(*trucks: str) -> Site:
    return Site(parse_scenario(HEAD + "".join(trucks)))


Probe = Callable[[Site], None]


def drive(
    site: Site,
    until: float,
    *,
    operator: bool = True,
    probe: Probe | None = None,
    step: float = 0.25,
) -> list[Event]:
    """Run the site; an 'operator' raises the barrier once a standing truck reads stable."""
    events: list[Event] = []
    t = site.t
    while t < until and not site.finished:
        t += step
        events += site.advance(t)
        if probe is not None:
            probe(site)
        standing = [v for v in site.visits if v.state == "standing"]
        if operator and standing and site.scale.last.stable and site.barrier.target == 0:
            site.set_outputs(GateOutputs(barrier_up=True))
        moving_off = [v for v in site.visits if v.state == "driving_off"]
        if operator and site.barrier.is_up and not standing and not moving_off:
            site.set_outputs(GateOutputs(barrier_down=True))
    return events


def names(events: list[Event]) -> list[str]:
    return [e.data["event"] for e in events if e.record == "event" and e.data["event"] != "barrier"]


def truths(events: list[Event]) -> list[dict]:
    return [e.data for e in events if e.record == "truth"]


def test_axle_loads_add_up_exactly() -> None:
    for axles in range(2, 7):
        shape = truck_shape(axles, 49_017)
        assert sum(shape.axle_loads_kg) == 49_017
        assert len(shape.axle_offsets_m) == axles


def test_honest_two_pass_truck_records_tare_then_gross() -> None:
    site = site_for(truck("陕K1", 6, 15_000, 34_000, 1, 'passes = "two"\nreturn_after_s = 30\n'))
    stable_weights: list[int] = []

    def probe(s: Site) -> None:
        if any(v.state == "standing" for v in s.visits) and s.scale.last.stable:
            stable_weights.append(s.scale.last.gross_kg)

    events = drive(site, 400, probe=probe)
    assert site.finished
    assert names(events) == ["arrived", "on_platform", "stopped", "left"] * 2
    t1, t2 = truths(events)
    assert (t1["pass"], t1["true_on_scale_kg"]) == ("tare", 15_000)
    assert (t2["pass"], t2["true_on_scale_kg"]) == ("gross", 49_000)
    assert t1["weighed"] and t2["weighed"] and not t2["forced_barrier"]
    assert any(abs(w - 15_000) <= class_iii_mpe_kg(15_000, 20) for w in stable_weights)
    assert any(abs(w - 49_000) <= class_iii_mpe_kg(49_000, 20) for w in stable_weights)
    site.advance(site.t + 10)
    assert site.scale.last.gross_kg == 0, "the scale returns to zero between trucks"


def test_truck_waits_at_the_closed_barrier_until_it_opens() -> None:
    site = site_for(truck("陕K1", 4, 12_000, 18_000, 0))
    drive(site, 120, operator=False)
    (v,) = site.visits
    assert v.state == "standing" and site.t >= 119
    inputs = site.inputs()
    assert inputs.barrier_down_fb and not inputs.barrier_up_fb
    assert not inputs.ir_entry and not inputs.ir_exit, "fully on the platform"
    site.set_outputs(GateOutputs(barrier_up=True))
    site.advance(site.t + 1.0)
    assert v.state == "standing", "the barrier takes its travel time"
    assert not site.inputs().barrier_down_fb and not site.inputs().barrier_up_fb
    site.advance(site.t + 2.5)
    assert site.inputs().barrier_up_fb
    events = site.advance(site.t + 30)
    assert v.state == "gone" and truths(events)[0]["weighed"]


def test_sensors_follow_the_truck() -> None:
    site = site_for(truck("陕K1", 6, 15_000, 34_000, 0))
    seen: dict[str, set[bool]] = {
        "ir_entry": set(),
        "ir_exit": set(),
        "loop_entry": set(),
        "loop_exit": set(),
    }

    def probe(s: Site) -> None:
        i = s.inputs()
        for name in seen:
            seen[name].add(getattr(i, name))

    site.advance(0.1)
    first = site.inputs()
    assert first.loop_entry and not first.ir_entry, "queued on the entry loop"
    drive(site, 200, probe=probe, step=0.05)
    assert all(values == {True, False} for values in seen.values()), seen
    assert site.inputs() == site.inputs().__class__(
        barrier_up_fb=site.barrier.is_up, barrier_down_fb=site.barrier.is_down
    )


def test_red_light_holds_the_truck_at_the_entry() -> None:
    site = site_for(truck("陕K1", 3, 10_000, 14_000, 0))
    site.set_outputs(GateOutputs(light_red=True))
    site.advance(60)
    assert site.visits[0].state == "queued" and site.scale.last.gross_kg == 0
    site.set_outputs(GateOutputs(light_green=True))
    site.advance(90)
    assert site.visits[0].state == "standing"


def test_one_axle_off_reads_light_and_blocks_the_entry_beam() -> None:
    cheat = '[[truck.cheat]]\nkind = "one_axle_off"\n'
    site = site_for(truck("陕K1", 6, 15_000, 34_000, 0, cheat))
    site.advance(60)
    (v,) = site.visits
    assert v.state == "standing"
    assert site.platform_load_kg() == 49_000 - v.shape.axle_loads_kg[-1]
    assert site.inputs().ir_entry
    assert abs(site.scale.last.gross_kg - site.platform_load_kg()) <= 40


def test_a_truck_half_off_pulls_fully_on_when_the_barrier_stays_down() -> None:
    """Issue 12: the gate never opens for a truck it could not weigh; its driver pulls fully on
    after ``give_up_s`` at the closed barrier and is weighed with every axle on the scale."""
    cheat = '[[truck.cheat]]\nkind = "one_axle_off"\ngive_up_s = 30\n'
    site = site_for(truck("陕K1", 6, 15_000, 34_000, 0, cheat))
    site.advance(40)
    (v,) = site.visits
    assert v.state == "standing" and site.inputs().ir_entry
    events = site.advance(120)  # nobody raises the barrier
    assert "pulling_on" in names(events) and v.state == "standing"
    assert site.platform_load_kg() == 49_000 and not site.inputs().ir_entry
    events = drive(site, 300)
    assert truths(events)[0]["weighed"] and v.state == "gone"


def test_tailgating_truck_adds_its_front_axles() -> None:
    cheat = '[[truck.cheat]]\nkind = "tailgate"\n'
    site = site_for(truck("陕K1", 4, 12_000, 18_000, 0), truck("陕K2", 3, 10_000, 14_000, 1, cheat))
    site.advance(60)
    leader, follower = site.visits
    assert leader.state == "standing" and follower.state == "standing"
    assert 30_000 < site.platform_load_kg() < 30_000 + 24_000
    assert site.inputs().ir_entry, "the follower spans the entry edge"
    events = drive(site, 200)
    assert [t["plate"] for t in truths(events)] == ["陕K1", "陕K2"]
    assert leader.state == follower.state == "gone"


def test_a_tailgater_held_at_a_closed_barrier_backs_off_and_is_weighed_alone() -> None:
    """Issue 12: the gate never opens for the truck in front while two stand on the scale. The
    tailgater gives up after ``give_up_s``, reverses off, and comes on again by itself."""
    cheat = '[[truck.cheat]]\nkind = "tailgate"\ngive_up_s = 60\n'
    site = site_for(truck("陕K1", 4, 12_000, 18_000, 0), truck("陕K2", 3, 10_000, 14_000, 1, cheat))
    site.advance(60)
    leader, follower = site.visits
    assert leader.state == follower.state == "standing"
    assert follower.stopped_t is not None and follower.stopped_t > 0
    events = site.advance(follower.stopped_t + 90)  # nobody raises the barrier
    assert "backing_off" in names(events) and "backed_off" in names(events)
    assert follower.state == "queued" and not site.inputs().ir_entry
    assert site.platform_load_kg() == 30_000, "the leader alone on the scale"
    assert leader.state == "standing" and not site.inputs().ir_exit, "pulled back off the beam"
    events = drive(site, 400)
    assert [t["plate"] for t in truths(events)] == ["陕K1", "陕K2"]
    stood = [e.data["plate"] for e in events
             if e.record == "event" and e.data["event"] == "stopped"]
    assert stood == ["陕K2"], "the follower drove on again and stopped on the scale on its own"
    assert follower.state == "gone" and truths(events)[1]["weighed"]


def test_jammer_changes_the_reading_not_the_truth() -> None:
    cheat = '[[truck.cheat]]\nkind = "jammer"\ndelta_kg = -3000\nafter_s = 2\n'
    site = site_for(truck("陕K1", 5, 14_000, 29_000, 0, cheat))
    events = site.advance(60)
    assert "jammer" in names(events)
    assert site.platform_load_kg() == 43_000
    assert abs(site.scale.last.gross_kg - 40_000) <= 40


def test_water_tank_plate_swap_and_truth_record() -> None:
    cheats = (
        'passes = "two"\nreturn_after_s = 20\n[[truck.cheat]]\nkind = "water_tank"\n'
        'water_kg = 800\n[[truck.cheat]]\nkind = "plate_swap"\nshown_plate = "陕K9"\n'
    )
    site = site_for(truck("陕K1", 6, 15_000, 34_000, 0, cheats))
    plates: set[str | None] = set()
    events = drive(site, 400, probe=lambda s: plates.add(s.camera_plate()))
    tare, gross = truths(events)
    assert tare["true_on_scale_kg"] == 15_800 and tare["water_kg"] == 800
    assert tare["true_tare_kg"] == 15_000 and tare["cheats"] == ["water_tank"]
    assert gross["shown_plate"] == "陕K9" and gross["plate"] == "陕K1"
    assert plates == {None, "陕K1", "陕K9"}


def test_no_weighing_and_forced_barrier_escape() -> None:
    cheats = '[[truck.cheat]]\nkind = "no_weighing"\n[[truck.cheat]]\nkind = "force_barrier"\n'
    site = site_for(truck("陕K1", 2, 6_000, 10_000, 0, cheats + "after_s = 3\n"))
    events = drive(site, 120, operator=False)
    assert "forced_barrier" in names(events) and "stopped" not in names(events)
    (truth,) = truths(events)
    assert truth["forced_barrier"] and not truth["weighed"]
    assert site.inputs().barrier_down_fb, "the arm never went up"


def test_next_truck_waits_until_the_platform_is_clear() -> None:
    site = site_for(truck("陕K1", 4, 12_000, 18_000, 0), truck("陕K2", 3, 10_000, 14_000, 1))
    site.advance(80)
    assert site.visits[1].state == "queued"
    assert site.platform_load_kg() == 30_000
    events = drive(site, 300)
    assert [t["plate"] for t in truths(events)] == ["陕K1", "陕K2"]


def test_repeat_traffic_sends_every_truck_again_after_now() -> None:
    site = site_for(truck("陕K00001", 3, 10000, 14000, 1),
                    truck("陕K00002", 2, 6000, 9000, 4))
    first = drive(site, 400)
    assert site.finished
    left = [e.data["plate"] for e in first if e.data.get("event") == "left"]
    assert left == ["陕K00001", "陕K00002"]
    now = site.t
    assert site.repeat_traffic() == 2
    assert not site.finished
    assert len(site.visits) == 2, "finished visits are dropped, so a long run stays small"
    assert sorted(v.arrive_t - now for v in site.visits) == [1, 4]
    again = drive(site, now + 400)
    assert [e.data["plate"] for e in again if e.data.get("event") == "left"] == left
    assert site.finished
