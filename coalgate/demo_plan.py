"""What `coalgate demo` runs: the sites, their trucks, and the config files it writes.

Pure: functions take data and return data or text (TOML), so the plan is tested without
starting anything. ``coalgate.demo`` writes the files and runs the processes.

Each site has a different indicator on a different transport, as real sites do: a Yaohua
XK3190 on a serial port (pty), a Mettler Toledo behind a serial-to-Ethernet box (TCP), a Modbus
TCP weighing transmitter; all have their gate IO on a Modbus TCP board. Each site's traffic is a
short round of honest trucks and scripted cheats, repeated until the demo stops
(``coalgate sim run --repeat``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from coalgate import sim_site

__all__ = [
    "CheatPlan",
    "SitePlan",
    "TruckPlan",
    "central_config_toml",
    "gate_policy",
    "registered_vehicles",
    "scenario_toml",
    "site_config_toml",
    "shown_plates",
    "site_plans",
]

# Scale endpoints of the simulator (docs/simulator.md), in the order sites take them.
SCALE_KINDS = ("xk3190_pty", "toledo_tcp", "modbus_tcp")
SCALE_LABELS = {
    "xk3190_pty": "耀华 XK3190-A9 串口 / Yaohua XK3190 over serial (pty)",
    "toledo_tcp": "托利多连续输出 TCP / Mettler Toledo continuous over TCP",
    "modbus_tcp": "Modbus TCP 称重变送器 / Modbus TCP weighing transmitter",
}


@dataclass(frozen=True)
class CheatPlan:
    """A scripted cheat: the simulator's ``[[truck.cheat]]`` table and the alarms it must raise.

    ``expect``: central alarm codes of which at least one must appear for this truck.
    """

    label: str
    tables: tuple[dict[str, Any], ...]
    expect: tuple[str, ...]


@dataclass(frozen=True)
class TruckPlan:
    plate: str
    axles: int
    tare_kg: int
    load_kg: int
    arrive_s: float
    passes: str = "one"  # "one" (registered tare) | "two" (tare pass, then gross pass)
    ticket: bool = True  # the driver shows an e-ticket QR on the loaded pass
    cheat: CheatPlan | None = None
    return_after_s: float = 40.0
    dwell_s: float = 6.0

    @property
    def honest(self) -> bool:
        return self.cheat is None


@dataclass(frozen=True)
class SitePlan:
    site_id: str
    name: str
    enterprise: str
    scale_kind: str
    lat: float
    lon: float
    trucks: tuple[TruckPlan, ...] = field(default_factory=tuple)

    @property
    def scale_label(self) -> str:
        return SCALE_LABELS[self.scale_kind]


# Enterprise ids (the e-ticket issuer `iss`; docs/tickets.md §9.1) and their names.
ENTERPRISES = ("E610800001", "E610800002")
ENTERPRISE_NAMES = {"E610800001": "榆林示范煤业有限公司", "E610800002": "神木兰炭化工有限公司"}

_ESCAPE = CheatPlan(
    "冲卡逃逸（不过磅强行闯杆）/ escape: drives across and forces the barrier",
    ({"kind": "no_weighing"}, {"kind": "force_barrier", "after_s": 4}),
    ("escape", "barrier_forced"),
)
_OVERLOAD = CheatPlan(
    "超载后闯杆 / overloaded (3 axles, 31 t > 25 t), then forces the barrier",
    ({"kind": "force_barrier", "after_s": 12},),
    ("overload",),
)
_PLATE_SWAP = CheatPlan(
    "套牌（票与车牌不符）/ plate swap: the ticket is for another plate",
    ({"kind": "plate_swap", "shown_plate": "陕K3C999"},),
    ("plate_mismatch", "invalid_ticket"),
)
_WATER = CheatPlan(
    "皮重加水（皮重超出历史范围）/ water in the tank at tare",
    ({"kind": "water_tank", "water_kg": 1500},),
    ("tare_out_of_band",),
)


def site_plans(n: int) -> list[SitePlan]:
    """``n`` sites (1 or more): the first three are the scripted ones, more repeat their mix."""
    if n < 1:
        raise ValueError("the demo needs at least one site")
    templates = [
        ("yl-mine-01", "榆林示范煤矿 1号磅", ENTERPRISES[0], 38.29, 109.73, (
            TruckPlan("陕K1A001", 6, 15000, 32000, 2),
            TruckPlan("陕K1A002", 5, 14000, 27000, 6),
            TruckPlan("陕K1A003", 4, 12000, 18000, 10, ticket=False, cheat=_ESCAPE),
            TruckPlan("陕K1A004", 6, 15500, 31000, 14),
        )),
        ("yl-mine-02", "榆林示范煤矿 2号磅", ENTERPRISES[0], 38.31, 109.77, (
            TruckPlan("陕K2B001", 6, 15000, 33000, 2),
            TruckPlan("陕K2B002", 3, 11000, 20000, 6, ticket=False, cheat=_OVERLOAD),
            TruckPlan("陕K2B003", 5, 14000, 26000, 10),
        )),
        ("sm-plant-03", "神木兰炭厂 东磅房", ENTERPRISES[1], 38.83, 110.50, (
            TruckPlan("陕K3C001", 6, 15000, 32000, 2),
            TruckPlan("陕K3C002", 6, 15000, 30000, 6, cheat=_PLATE_SWAP),
            TruckPlan("陕K3C003", 5, 14000, 28000, 10),
            TruckPlan("陕K3C004", 6, 15000, 28000, 14, passes="two", cheat=_WATER),
        )),
    ]
    plans: list[SitePlan] = []
    for i in range(n):
        site_id, name, enterprise, lat, lon, trucks = templates[i % len(templates)]
        if i >= len(templates):
            site_id = f"{site_id.rsplit('-', 1)[0]}-{i + 1:02d}"  # yl-mine-04, sm-plant-06
            name = f"{name}（{i + 1}）"
            trucks = tuple(_renumbered(t, i + 1) for t in trucks)
        plans.append(SitePlan(site_id, name, enterprise, SCALE_KINDS[i % len(SCALE_KINDS)],
                              lat + 0.01 * (i // len(templates)), lon, trucks))
    return plans


def _renumbered(truck: TruckPlan, n: int) -> TruckPlan:
    """The truck for site ``n``: plates are per site, so an alarm maps to one truck."""

    def plate(p: str) -> str:
        return f"{p[:3]}{n:02d}{p[5:]}"  # keep the province and city letter: 陕K + nn + rest

    cheat = truck.cheat
    if cheat is not None:
        tables = tuple({**t, "shown_plate": plate(str(t["shown_plate"]))}
                       if t.get("kind") == "plate_swap" else t for t in cheat.tables)
        cheat = CheatPlan(cheat.label, tables, cheat.expect)
    return replace(truck, plate=plate(truck.plate), cheat=cheat)


# Simulated seconds before the first truck arrives: the gate agent starts after the simulator
# (it needs the simulator's endpoints) and must be watching when the first truck drives on.
FIRST_ARRIVAL_S = 16.0


def scenario_toml(plan: SitePlan, seed: int) -> str:
    """The simulator scenario for one round of the site's traffic (docs/simulator.md)."""
    lines = [
        "# Written by `coalgate demo`: one round of traffic, repeated with --repeat.",
        "[scenario]",
        f"name = {json.dumps(plan.site_id)}",
        f"description = {json.dumps('demo traffic of ' + plan.name, ensure_ascii=False)}",
        f"seed = {seed}",
        "",
    ]
    for t in plan.trucks:
        lines += [
            "[[truck]]",
            f"plate = {json.dumps(t.plate, ensure_ascii=False)}",
            f"axles = {t.axles}",
            f"tare_kg = {t.tare_kg}",
            f"load_kg = {t.load_kg}",
            f"arrive_s = {t.arrive_s + FIRST_ARRIVAL_S}",
            f'passes = "{t.passes}"',
            f"return_after_s = {t.return_after_s}",
            f"dwell_s = {t.dwell_s}",
        ]
        for table in t.cheat.tables if t.cheat else ():
            lines.append("[[truck.cheat]]")
            lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


def shown_plates(truck: TruckPlan) -> tuple[str, ...]:
    """Plates the camera shows for this truck: its own, and a swapped one if it cheats so."""
    swapped = [str(t["shown_plate"]) for t in (truck.cheat.tables if truck.cheat else ())
               if t.get("kind") == "plate_swap"]
    return (truck.plate, *swapped)


def registered_vehicles(plan: SitePlan) -> list[tuple[str, TruckPlan]]:
    """The vehicle register (车辆备案) of the site: every plate a camera will show.

    A swapped plate is registered too — to a like truck, as a cloned plate (套牌) would be —
    so the gate weighs the truck and the swap shows up as a ticket for another plate.
    """
    return [(plate, t) for t in plan.trucks for plate in shown_plates(t)]


def gate_policy(speed: float) -> dict[str, Any]:
    """Gate policy for a simulator running ``speed`` times real time.

    The gate runs on the wall clock, so its timers shrink with the simulated clock; the
    tolerances are the product defaults. A ticket is required: every honest truck carries one.
    """
    return {"mode": "auto", "ticket_required": True, **sim_site.timings_for_speed(speed)}


def site_config_toml(
    plan: SitePlan,
    endpoints: dict[str, Any],
    *,
    console_port: int,
    mqtt_host: str,
    mqtt_port: int,
    speed: float,
    mqtt_protocol: str = "3.1.1",
    mqtt_password_file: str | None = None,
    trust_roots: Sequence[str] = (),
) -> str:
    """The gate agent's site config (config/site.example.toml) for the simulator's endpoints.

    Paths are relative to the config file's directory (the site's directory in the data dir).
    ``mqtt_protocol``: the demo's in-process broker (amqtt) speaks MQTT 3.1.1 only.
    ``trust_roots``: the bureau's trust-root verifier keys (text), so the gate accepts the
    issuer trust list the central's ticket publisher sends it.
    """
    camera = endpoints.get("camera") or {}
    return sim_site.site_config_toml(
        site_id=plan.site_id,
        name=plan.name,
        endpoints=endpoints,
        scale_endpoint=plan.scale_kind,
        policy=gate_policy(speed),
        vehicles=[sim_site.RegisteredVehicle(plate, t.axles, t.tare_kg)
                  for plate, t in registered_vehicles(plan)],
        console_port=console_port,
        snapshot_url=camera.get("snapshot"),
        trust_roots=trust_roots,
        mqtt=sim_site.MqttLink(mqtt_host, mqtt_port, mqtt_protocol, mqtt_password_file),
        scanner_push=True,
        comment=(f"Written by `coalgate demo` for {plan.site_id}; the production form of this "
                 f"file is\nconfig/site.example.toml. Scale: {plan.scale_label}."),
    )


def central_config_toml(
    *,
    database_url: str,
    data_dir: str,
    mqtt_host: str,
    mqtt_port: int,
    api_port: int,
    mqtt_protocol: str = "3.1.1",
    mqtt_password: str | None = None,
    mqtt_password_file: str | None = None,
    root_key_file: str | None = None,
    issuer_key_dir: str | None = None,
) -> str:
    """The central's config (config/central.example.toml) for the demo's embedded services.
    ``mqtt_password_file`` keeps the broker password out of the file (the demo's way);
    ``mqtt_password`` writes it inline (then write the file 0600, as the demo does anyway)."""
    if mqtt_password_file:
        login = f'username = "central"\npassword_file = {json.dumps(mqtt_password_file)}\n'
    elif mqtt_password:
        login = f'username = "central"\npassword = {json.dumps(mqtt_password)}\n'
    else:
        login = ""
    # The bureau's trust-root key: with it `central serve` rotates issuer keys via the API.
    tickets = ""
    if root_key_file or issuer_key_dir:
        tickets = "\n[tickets]\n"
        if root_key_file:
            tickets += f"root_key_file = {json.dumps(root_key_file)}\n"
        if issuer_key_dir:  # issuer signing keys: 0600 files here, never in the database
            tickets += f"issuer_key_dir = {json.dumps(issuer_key_dir)}\n"
    return f"""# Written by `coalgate demo`; the production form is config/central.example.toml.
timezone = "Asia/Shanghai"

[database]
# The embedded PostgreSQL the demo started (Unix socket in the data directory).
url = {json.dumps(database_url)}
data_dir = {json.dumps(data_dir)}

[mqtt]
host = "{mqtt_host}"
port = {mqtt_port}
# The demo's in-process broker (amqtt) speaks MQTT 3.1.1 only: no shared subscriptions, so
# the demo runs one ingest worker. Production brokers use "5".
protocol = "{mqtt_protocol}"
keepalive = 15
{login}
[witness]
key_file = "witness.key"
name = "coalgate-central"

[ingest]
share_group = "ingest"
client_id = "demo-ingest"

[api]
host = "127.0.0.1"
port = {api_port}
offline_sweep_s = 5.0

[rules]
offline_after_s = 120
{tickets}"""
