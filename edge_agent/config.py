"""Site configuration (TOML), validated with pydantic; problems are explained with the key path.

``load_config(path)`` returns a :class:`SiteConfig` or raises :class:`ConfigError` whose
``problems`` each read like "Expected integer, but cannot parse 'fast' as an integer
(scale.baudrate)", so an installer can fix the file without reading code.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.gate.policy import DEFAULT_AXLE_LIMITS_KG, GatePolicy
from ledger.errors import LedgerError
from ledger.keys import VerifierKey

__all__ = ["ConfigError", "SiteConfig", "console_warnings", "is_loopback", "load_config",
           "parse_config", "read_secret"]


class ConfigError(Exception):
    """The site config cannot be used; ``problems`` lists every one found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Port = Annotated[int, Field(ge=1, le=65535)]


class SiteSection(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    name: str = ""
    key: str  # signer key file (C2SP signed-note format, mode 0600)
    ledger: str = "var/ledger.sqlite"
    utc_offset_h: Annotated[int, Field(ge=-12, le=14)] = 8
    checkpoint_every_s: Annotated[int, Field(ge=10)] = 300


class ModbusScaleMap(_Strict):
    """Register map of a Modbus weighing transmitter (0-based protocol addresses)."""

    unit_id: Annotated[int, Field(ge=0, le=247)] = 1
    table: Literal["holding", "input"] = "holding"
    weight_address: Annotated[int, Field(ge=0, le=65535)] = 0
    weight_words: Literal[1, 2] = 2
    word_order: Literal["big", "little"] = "big"
    signed: bool = True
    status_address: Annotated[int, Field(ge=0, le=65535)] | None = 4
    stable_bit: Annotated[int, Field(ge=0, le=15)] | None = 0
    decimals_address: Annotated[int, Field(ge=0, le=65535)] | None = 5
    decimals: Annotated[int, Field(ge=0, le=4)] = 0  # used when decimals_address is unset


class ScaleSection(_Strict):
    protocol: Literal["xk3190", "xk3190_format2", "toledo", "sics", "regex", "modbus"]
    transport: Literal["serial", "tcp", "modbus_tcp", "modbus_rtu"]
    device: str | None = None
    baudrate: Annotated[int, Field(ge=300, le=921600)] = 9600
    host: str | None = None
    port: Port | None = None
    unit: Literal["kg", "t"] = "kg"
    e_kg: Annotated[int, Field(ge=1, le=1000)] = 20
    capacity_kg: Annotated[int, Field(ge=100, le=300000)] = 100000
    toledo_checksum: bool = True
    regex_pattern: str | None = None
    regex_terminator: str = "\r\n"
    poll_ms: Annotated[int, Field(ge=20, le=5000)] = 100
    modbus: ModbusScaleMap = ModbusScaleMap()

    @model_validator(mode="after")
    def _consistent(self) -> ScaleSection:
        modbus_proto = self.protocol == "modbus"
        modbus_transport = self.transport.startswith("modbus")
        if modbus_proto != modbus_transport:
            raise ValueError(
                "protocol 'modbus' goes with transport 'modbus_tcp' or 'modbus_rtu' and the "
                "serial protocols with 'serial' or 'tcp'"
            )
        _need_endpoint(self.transport, self.device, self.host, self.port)
        if self.protocol == "regex":
            if not self.regex_pattern:
                raise ValueError(
                    "protocol 'regex' needs regex_pattern with a (?P<weight>...) group"
                )
            try:
                compiled = re.compile(self.regex_pattern)
            except re.error as exc:
                raise ValueError(f"regex_pattern does not compile: {exc}") from exc
            if "weight" not in compiled.groupindex:
                raise ValueError("regex_pattern needs a named group (?P<weight>...)")
        return self


def _need_endpoint(transport: str, device: str | None, host: str | None, port: int | None) -> None:
    if transport in ("serial", "modbus_rtu", "usb_relay") and not device:
        raise ValueError(f"transport '{transport}' needs device = \"/dev/ttyUSB0\" (or similar)")
    if transport in ("tcp", "modbus_tcp") and (not host or port is None):
        raise ValueError(f"transport '{transport}' needs host and port")


class CoilMap(_Strict):
    barrier_up: int = 0
    barrier_down: int | None = 1
    light_red: int | None = 2
    light_green: int | None = 3
    horn: int | None = 4


class InputMap(_Strict):
    ir_entry: int = 0
    ir_exit: int = 1
    loop_entry: int | None = 2
    loop_exit: int = 3
    barrier_up_fb: int | None = 4
    barrier_down_fb: int | None = 5


class IoSection(_Strict):
    kind: Literal["modbus_tcp", "modbus_rtu", "usb_relay", "none"]
    device: str | None = None
    baudrate: Annotated[int, Field(ge=300, le=921600)] = 9600
    host: str | None = None
    port: Port | None = None
    unit_id: Annotated[int, Field(ge=0, le=247)] = 1
    poll_ms: Annotated[int, Field(ge=20, le=2000)] = 100
    pulse_ms: Annotated[int, Field(ge=50, le=5000)] = 500  # relay boards: momentary pulse
    coils: CoilMap = CoilMap()
    inputs: InputMap = InputMap()

    @model_validator(mode="after")
    def _consistent(self) -> IoSection:
        if self.kind != "none":
            _need_endpoint(self.kind, self.device, self.host, self.port)
        return self


class CameraSection(_Strict):
    anpr_push: bool = True  # accept plate results pushed to POST /device/anpr
    # The camera's push secret (one line, file mode 0600): sent as `Authorization: Bearer
    # <secret>` or as the last path segment (/device/anpr/<secret>). Without it every push is
    # refused.
    push_secret_file: str | None = None
    snapshot_url: str | None = None  # JPEG snapshot, e.g. http://192.168.1.64/snapshot.jpg
    mjpeg_url: str | None = None  # used when there is no snapshot URL
    read_plates: bool = False  # read plates on the gate PC from camera frames
    frames: Annotated[int, Field(ge=1, le=10)] = 5  # frames read and voted per truck
    frame_interval_ms: Annotated[int, Field(ge=0, le=5000)] = 200
    # Below this the plate is only a candidate and the console asks the operator.
    min_confidence: Annotated[float, Field(ge=0.5, le=1.0)] = 0.9
    min_plate_width_px: Annotated[int, Field(ge=20, le=1000)] = 90
    # Optional narrowing of the search for a fixed gate camera (docs/plates.md): the region
    # of the frame the plate can be in (x, y, w, h pixels) and the plate's usual width.
    plate_roi: tuple[int, int, int, int] | None = None
    expected_plate_width_px: Annotated[int, Field(ge=40, le=1000)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CameraSection:
        if self.read_plates and not (self.snapshot_url or self.mjpeg_url):
            raise ValueError("read_plates = true needs snapshot_url (or mjpeg_url) of the camera")
        return self


class ScannerSection(_Strict):
    # camera: a camera at the driver's window whose snapshots are searched for the ticket QR.
    kind: Literal["serial", "tcp", "keyboard", "camera", "none"] = "none"
    device: str | None = None
    baudrate: Annotated[int, Field(ge=300, le=921600)] = 9600
    host: str | None = None
    port: Port | None = None
    snapshot_url: str | None = None
    interval_ms: Annotated[int, Field(ge=100, le=10_000)] = 500
    # A network scanner that POSTs its reads to /device/scan authenticates with this secret
    # (like camera.push_secret_file). The keyboard-wedge scanner types into the console page
    # and needs none: it rides on the operator's login.
    push_secret_file: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ScannerSection:
        if self.kind in ("serial", "tcp"):
            _need_endpoint(self.kind, self.device, self.host, self.port)
        if self.kind == "camera" and not self.snapshot_url:
            raise ValueError("kind = \"camera\" needs snapshot_url (the camera's JPEG "
                             "snapshot address, e.g. http://192.168.1.64/snapshot.jpg)")
        return self


def _looks_like_key_text(root: str) -> bool:
    """A verifier key text is ``name+keyid+base64``; a file path has no '+'-separated id."""
    parts = root.strip().split("+", 2)
    return len(parts) == 3 and "/" not in parts[0] and bool(re.fullmatch(r"[0-9a-f]{8}", parts[1]))


class TicketsSection(_Strict):
    store: str = "var/tickets.sqlite"
    # The loading site (mine) whose tickets this gate accepts, when it is not site.id: a second
    # weighbridge of a mine (its own ledger). Default: site.id. The verifier checks tickets
    # against it; deltas still arrive on this gate's own topic (the central enrols the gate
    # with the same --loading-site and publishes to every gate of the mine).
    site: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] | None = None
    # The bureau's trust-root verifier keys that sign the issuer trust list: each a key text
    # (`name+keyid+base64`) or a file holding one (relative to this file). Without any, the
    # gate cannot accept a trust list from the central.
    trust_roots: list[str] = []

    @model_validator(mode="after")
    def _roots(self) -> TicketsSection:
        for i, root in enumerate(self.trust_roots):
            if not root.strip():
                raise ValueError(f"trust_roots[{i}] is empty; give a key text or a key file")
            if _looks_like_key_text(root):
                try:
                    VerifierKey.from_text(root)
                except LedgerError as exc:
                    raise ValueError(f"trust_roots[{i}] is not a valid verifier key: {exc}; "
                                     "copy it again from `coalgate ledger keygen` output "
                                     "or the bureau's trust-root file") from exc
        return self

    def trust_root_keys(self) -> list[VerifierKey]:
        """The trust roots as ``VerifierKey``s, reading key files (after :meth:`resolve`).
        Raises ``ConfigError`` naming the entry when a file is missing or holds no key."""
        keys = []
        for i, root in enumerate(self.trust_roots):
            where = f"tickets.trust_roots[{i}]"
            if _looks_like_key_text(root):
                keys.append(VerifierKey.from_text(root))
                continue
            try:
                text = Path(root).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(root, [f"cannot read the trust-root key file: {exc.strerror}; "
                                         f"fix the path ({where})"]) from exc
            try:
                keys.append(VerifierKey.from_text(text))
            except LedgerError as exc:
                raise ConfigError(root, [f"the file does not hold a verifier key ({exc}); it "
                                         f"should contain one line name+keyid+base64 "
                                         f"({where})"]) from exc
        return keys


class PolicySection(_Strict):
    mode: Literal["two_pass", "one_pass", "auto"] = "two_pass"
    ticket_required: bool = False
    quota: Literal["enforce", "monitor", "off"] = "monitor"
    axle_limits_kg: dict[str, Annotated[int, Field(ge=1000, le=200000)]] = Field(
        default_factory=lambda: {str(k): v for k, v in DEFAULT_AXLE_LIMITS_KG.items()}
    )
    default_axles: Annotated[int, Field(ge=2, le=12)] | None = None
    net_tolerance_pct: Annotated[float, Field(ge=0, le=50)] = 5.0
    net_tolerance_kg: Annotated[int, Field(ge=0)] = 500
    tare_band_pct: Annotated[float, Field(ge=0, le=50)] = 3.0
    tare_band_kg: Annotated[int, Field(ge=0)] = 300
    tare_expiry_h: Annotated[float, Field(gt=0)] = 72.0
    open_tare_expiry_h: Annotated[float, Field(gt=0)] = 24.0
    stability_window_ms: Annotated[int, Field(ge=200, le=30000)] = 2000
    zero_band_kg: Annotated[int, Field(ge=0)] = 100
    min_vehicle_kg: Annotated[int, Field(ge=100)] = 1000
    min_load_kg: Annotated[int, Field(ge=0)] = 3000
    jump_kg: Annotated[int, Field(ge=20)] = 500
    second_vehicle_kg: Annotated[int, Field(ge=100)] = 2000
    unstable_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    beam_grace_s: Annotated[float, Field(ge=0)] = 5.0
    identify_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    confirm_s: Annotated[float, Field(ge=0)] = 0.0
    release_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    device_timeout_s: Annotated[float, Field(gt=0)] = 3.0

    @model_validator(mode="after")
    def _axles(self) -> PolicySection:
        for k in self.axle_limits_kg:
            if not k.isdigit() or not 2 <= int(k) <= 12:
                raise ValueError(f"axle_limits_kg key {k!r} must be an axle count from 2 to 12")
        return self


class Vehicle(_Strict):
    plate: Annotated[str, Field(min_length=2, max_length=16)]
    axles: Annotated[int, Field(ge=2, le=12)] | None = None
    tare_kg: Annotated[int, Field(ge=500, le=60000)] | None = None  # registered tare (备案)

    @field_validator("plate")
    @classmethod
    def _normalised(cls, v: str) -> str:
        """Stored as the reader reports it (issue 12: ``陕K·7X215`` as written on the plate never
        matched the read ``陕K7X215``, so the 6-axle truck got the 2-axle limit)."""
        from edge_agent.plates.grammar import normalise_plate

        plate = normalise_plate(v)
        if plate is None:
            raise ValueError(
                f"{v!r} is not a valid Chinese plate: write the province character, the office "
                f"letter and 5 letters or digits (6 on new-energy plates; no I or O), e.g. "
                f"陕K7X215 — separators, spaces, lowercase and full-width characters are fine")
        return plate


class ConsoleSection(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080  # 0 = any free port
    language: Literal["zh", "en"] = "zh"
    # Operator accounts (`coalgate edge user add`); relative to this file, mode 0600.
    accounts: str = "var/accounts.sqlite"
    # Host names / addresses (optionally host:port) browsers may use to reach the console.
    # Always allowed: the bind host, localhost, 127.0.0.1 and [::1]. A console bound to
    # 0.0.0.0 needs its LAN name or address here.
    allowed_hosts: list[Annotated[str, Field(min_length=1, max_length=255)]] = []
    session_idle_s: Annotated[int, Field(ge=5, le=86_400)] = 1800  # logged out after idling
    session_max_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 43_200  # and after 12 h
    # Whether the read-only pages and GETs need a login too. Default: yes when the console
    # listens beyond loopback, no on 127.0.0.1 (the gate PC's own screen).
    reads_need_login: bool | None = None
    max_body_kib: Annotated[int, Field(ge=1, le=4096)] = 64  # larger request bodies: 413
    # HTTPS: a PEM certificate (chain) and its key; then the session cookie is Secure.
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _tls(self) -> ConsoleSection:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both (HTTPS) or neither")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.host)

    @property
    def login_for_reads(self) -> bool:
        return not self.loopback_only if self.reads_need_login is None else self.reads_need_login


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MqttSection(_Strict):
    host: str
    port: Port = 1883
    # "5" (default) or "3.1.1" for brokers without MQTT v5 (e.g. the demo's amqtt).
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    username: str | None = None
    password_file: str | None = None  # relative to this file; one line, the password
    # TLS: the system CA store verifies the broker unless tls_ca names a CA bundle;
    # tls_cert/tls_key: a client certificate, where the broker asks for one.
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _tls(self) -> MqttSection:
        named = [k for k in ("tls_ca", "tls_cert", "tls_key") if getattr(self, k)]
        if named and not self.tls:
            raise ValueError(f"{', '.join(named)} set but tls = false; set tls = true "
                             "or remove them")
        if self.tls_key and not self.tls_cert:
            raise ValueError("tls_key needs tls_cert (the client certificate it belongs to)")
        return self

    def settings(self, password: str | None) -> Any:
        """The ``edge_agent.sync.mqtt.MqttSettings`` for this section (paths resolved)."""
        from edge_agent.sync.mqtt import MqttSettings

        return MqttSettings(
            host=self.host, port=self.port, username=self.username, password=password,
            tls=self.tls,
            tls_ca=Path(self.tls_ca) if self.tls_ca else None,
            tls_cert=Path(self.tls_cert) if self.tls_cert else None,
            tls_key=Path(self.tls_key) if self.tls_key else None,
            keepalive=self.keepalive, protocol=self.protocol,
        )


class SiteConfig(_Strict):
    site: SiteSection
    scale: ScaleSection
    io: IoSection = IoSection(kind="none")
    camera: CameraSection = CameraSection()
    scanner: ScannerSection = ScannerSection()
    tickets: TicketsSection = TicketsSection()
    policy: PolicySection = PolicySection()
    vehicles: list[Vehicle] = []
    console: ConsoleSection = ConsoleSection()
    mqtt: MqttSection | None = None

    @model_validator(mode="after")
    def _one_entry_per_plate(self) -> SiteConfig:
        seen: dict[str, int] = {}
        for i, v in enumerate(self.vehicles):
            if v.plate in seen:
                raise ValueError(
                    f"vehicles[{i}] and vehicles[{seen[v.plate]}] are both {v.plate} once "
                    f"normalised; keep one [[vehicles]] entry per plate")
            seen[v.plate] = i
        return self

    def gate_policy(self) -> GatePolicy:
        p = self.policy
        return GatePolicy(
            site_id=self.site.id,
            mode=p.mode,
            ticket_required=p.ticket_required,
            axle_limits_kg={int(k): v for k, v in p.axle_limits_kg.items()},
            default_axles=p.default_axles,
            net_tolerance_pct=p.net_tolerance_pct,
            net_tolerance_kg=p.net_tolerance_kg,
            tare_band_pct=p.tare_band_pct,
            tare_band_kg=p.tare_band_kg,
            tare_expiry_h=p.tare_expiry_h,
            open_tare_expiry_h=p.open_tare_expiry_h,
            e_kg=self.scale.e_kg,
            stability_window_ms=p.stability_window_ms,
            zero_band_kg=p.zero_band_kg,
            min_vehicle_kg=p.min_vehicle_kg,
            min_load_kg=p.min_load_kg,
            jump_kg=p.jump_kg,
            second_vehicle_kg=p.second_vehicle_kg,
            unstable_timeout_ms=int(p.unstable_timeout_s * 1000),
            beam_grace_ms=int(p.beam_grace_s * 1000),
            identify_timeout_ms=int(p.identify_timeout_s * 1000),
            plate_min_conf_pm=int(round(self.camera.min_confidence * 1000)),
            await_reader=self.camera.read_plates,
            confirm_ms=int(p.confirm_s * 1000),
            release_timeout_ms=int(p.release_timeout_s * 1000),
            device_timeout_ms=int(p.device_timeout_s * 1000),
            utc_offset_h=self.site.utc_offset_h,
        )

    def resolve(self, base: Path) -> SiteConfig:
        """Relative file paths are relative to the config file's directory."""

        def r(p: str) -> str:
            return p if Path(p).is_absolute() else str((base / p).resolve())

        site = self.site.model_copy(update={"key": r(self.site.key), "ledger": r(self.site.ledger)})
        roots = [root if _looks_like_key_text(root) else r(root)
                 for root in self.tickets.trust_roots]
        tickets = self.tickets.model_copy(update={"store": r(self.tickets.store),
                                                  "trust_roots": roots})
        con = self.console
        console = con.model_copy(update={"accounts": r(con.accounts), **{
            k: r(getattr(con, k)) for k in ("tls_cert", "tls_key") if getattr(con, k)}})
        update: dict[str, Any] = {"site": site, "tickets": tickets, "console": console}
        for section in ("camera", "scanner"):
            sec = getattr(self, section)
            if sec.push_secret_file:
                update[section] = sec.model_copy(
                    update={"push_secret_file": r(sec.push_secret_file)})
        if self.mqtt is not None:
            m = self.mqtt
            update["mqtt"] = m.model_copy(update={
                k: r(getattr(m, k))
                for k in ("password_file", "tls_ca", "tls_cert", "tls_key") if getattr(m, k)
            })
        return self.model_copy(update=update)


_TYPE_WORDS = {
    "int_parsing": "integer",
    "int_type": "integer",
    "float_parsing": "number",
    "float_type": "number",
    "bool_parsing": "boolean (true or false)",
    "bool_type": "boolean (true or false)",
    "string_type": "string",
}


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    loc = re.sub(r"\.(\d+)(\.|$)", r"[\1]\2", loc)
    typ, inp, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if typ in _TYPE_WORDS:
        word = _TYPE_WORDS[typ]
        article = "an" if word[0] in "aeiou" else "a"
        msg = f"Expected {word}, but cannot parse {inp!r} as {article} {word}"
    elif typ == "missing":
        msg = "Required key is missing; add it"
    elif typ == "extra_forbidden":
        msg = f"Unknown key {str(err['loc'][-1])!r}; check its spelling or remove it"
    elif typ == "literal_error":
        msg = f"Expected one of {ctx.get('expected')}, got {inp!r}"
    elif typ in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = next(iter(ctx.values()), "?")
        word = {"greater_than_equal": "at least", "less_than_equal": "at most",
                "greater_than": "more than", "less_than": "less than"}[typ]
        msg = f"Expected a value {word} {bound}, got {inp!r}"
    elif typ == "string_pattern_mismatch":
        msg = f"{inp!r} is not allowed here: use letters, digits, '-', '_' or '.'"
    elif typ == "value_error":
        msg = str(ctx.get("error", err["msg"]))
    else:
        msg = err["msg"]
    return f"{msg} ({loc})" if loc else msg


def parse_config(data: dict[str, Any], path: str = "<config>") -> SiteConfig:
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [_describe(e) for e in exc.errors()]) from exc


def load_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), ["the file is not UTF-8; save it as UTF-8"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [f"not valid TOML: {exc}"]) from exc
    return parse_config(data, str(p)).resolve(p.parent)


def file_problems(cfg: SiteConfig) -> list[str]:
    """Checks on the files the config names (warnings for check-config; fatal at run)."""
    out: list[str] = []
    key = Path(cfg.site.key)
    if not key.exists():
        out.append(f"site key file {key} does not exist; create it with `coalgate ledger "
                   f"keygen --name {cfg.site.id} --out {key}` (site.key)")
    elif key.stat().st_mode & 0o077:
        out.append(f"site key file {key} is readable by others; run chmod 600 {key} (site.key)")
    ledger_dir = Path(cfg.site.ledger).parent
    if not ledger_dir.exists():
        out.append(f"ledger directory {ledger_dir} does not exist; create it (site.ledger)")
    for i, root in enumerate(cfg.tickets.trust_roots):
        if not _looks_like_key_text(root) and not Path(root).is_file():
            out.append(f"trust-root key file {root} does not exist; copy the bureau's "
                       f"trust-root verifier key there (tickets.trust_roots[{i}])")
    if cfg.mqtt is not None:
        for k in ("password_file", "tls_ca", "tls_cert", "tls_key"):
            value = getattr(cfg.mqtt, k)
            if value and not Path(value).is_file():
                out.append(f"{k} {value} does not exist; create it or fix the path (mqtt.{k})")
    for where, value in (("camera.push_secret_file", cfg.camera.push_secret_file),
                         ("scanner.push_secret_file", cfg.scanner.push_secret_file),
                         ("console.tls_cert", cfg.console.tls_cert),
                         ("console.tls_key", cfg.console.tls_key)):
        if not value:
            continue
        p = Path(value)
        if not p.is_file():
            out.append(f"{where} {p} does not exist; create it or fix the path ({where})")
        elif where != "console.tls_cert" and p.stat().st_mode & 0o077:
            out.append(f"{p} is readable by others; run chmod 600 {p} ({where})")
        elif where.endswith("push_secret_file") and len(read_secret(p)) < 16:
            out.append(f"{p} holds fewer than 16 characters; write a long random secret, e.g. "
                       f"`openssl rand -hex 24 > {p}` ({where})")
    return out


def read_secret(path: str | Path) -> str:
    """A one-line secret file's text, without the line end."""
    return Path(path).read_text(encoding="utf-8").strip()


def console_warnings(cfg: SiteConfig) -> list[str]:
    """Risky but runnable console settings: `check-config` prints them, `run` logs them."""
    from edge_agent.accounts import AccountStore

    c = cfg.console
    out: list[str] = []
    if not c.loopback_only and not c.tls:
        out.append(f"the console listens on {c.host} (beyond this PC) without TLS: logins and "
                   "session cookies cross the network in clear text; set console.tls_cert and "
                   "console.tls_key, or host = \"127.0.0.1\"")
    if not c.loopback_only and not c.allowed_hosts and c.host in ("0.0.0.0", "::", ""):
        out.append(f"the console listens on all addresses ({c.host}) but console.allowed_hosts "
                   "is empty, so browsers on the LAN are refused; add the name or address "
                   "operators type, e.g. allowed_hosts = [\"192.168.1.10\"]")
    try:
        n = len([a for a in AccountStore(c.accounts).list() if not a.disabled])
    except Exception as exc:  # an unreadable file is worth a warning, not a crash here
        out.append(f"cannot read the accounts file {c.accounts}: {exc} (console.accounts)")
        n = -1
    if n == 0:
        out.append(f"no operator accounts in {c.accounts}: nobody can log in to the console; "
                   "add one with `coalgate edge user add NAME --role supervisor -c <config>`")
    if cfg.camera.anpr_push and not cfg.camera.push_secret_file:
        out.append("camera.anpr_push = true but camera.push_secret_file is not set: every plate "
                   "push to /device/anpr is refused; write a secret file and set it")
    return out

