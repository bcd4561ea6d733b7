"""Request and response bodies of the API (separate from the tables they are read from)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ledger.errors import KeyFormatError
from ledger.keys import VerifierKey

__all__ = [
    "AlarmOut",
    "ErrorOut",
    "ProofOut",
    "ResolveIn",
    "SiteIn",
    "SiteOut",
    "SiteStatusOut",
    "TonnageOut",
    "TonnageRow",
    "WeighingOut",
    "WeighingPage",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ErrorOut(BaseModel):
    detail: Any = Field(description="What is wrong and how to fix it")


class SiteIn(_In):
    """Enrol a site: its id, owner and the verifier key its gate signs with."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                    examples=["yl-mine-03"], description="site id, as in the gate's entries")
    enterprise: str = Field(min_length=1, max_length=200, examples=["榆林某某煤业有限公司"])
    name: str = Field(min_length=1, max_length=200, examples=["3号矿 东磅房"])
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    verifier_key: str = Field(
        description="C2SP signed-note verifier key: name+8hexkeyid+base64(0x01‖pub)",
        examples=["yl-mine-03+4a5b6c7d+AdVw…"],
    )
    loading_site: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", examples=["yl-mine-03"],
        description="the loading site (mine) whose e-tickets this gate accepts; default: the "
                    "site's own id. Two weighbridges of one mine share it.",
    )

    @field_validator("verifier_key")
    @classmethod
    def _key_parses(cls, value: str) -> str:
        try:
            VerifierKey.from_text(value)
        except KeyFormatError as exc:
            raise ValueError(f"not a valid verifier key: {exc}") from None
        return value


class SiteStatusOut(BaseModel):
    online: bool = Field(description="reported online and heard from within the offline limit")
    reported_online: bool = Field(description="the site's last status message said online")
    last_seen: datetime | None
    verified_seq: int = Field(description="highest contiguous seq verified and stored (-1: none)")
    checkpoint_size: int | None = Field(description="size of the latest cosigned checkpoint")
    open_alarms: int
    gate_state: str | None = Field(default=None, description="the gate's phase, from its "
                                   "status heartbeat (idle, held, released, …)")
    stalled_min: int | None = Field(default=None, description="minutes without a weighing "
                                    "while a truck waits at the gate, once past the "
                                    "gate_stalled threshold; null when the gate is moving")


class SiteOut(BaseModel):
    id: str
    enterprise: str
    name: str
    lat: float | None
    lon: float | None
    verifier_key: str
    loading_site: str = Field(description="the loading site whose e-tickets this gate accepts")
    enrolled_at: datetime
    status: SiteStatusOut


WeighingPass = Literal["tare", "gross", "one_pass"]


class WeighingOut(BaseModel):
    site: str
    seq: int
    ts: datetime
    txn: str | None
    pass_: str = Field(alias="pass", serialization_alias="pass")
    plate: str | None
    plate_conf_pm: int | None
    plate_source: str | None
    axles: int | None
    weight_kg: int | None
    gross_kg: int | None
    tare_kg: int | None
    net_kg: int | None
    tare_source: str | None
    tare_seq: int | None
    ticket_id: str | None
    coal_type: str | None
    limit_kg: int | None
    decision: str | None
    reasons: list[str]

    model_config = ConfigDict(populate_by_name=True)


class WeighingPage(BaseModel):
    items: list[WeighingOut]
    next_before: str | None = Field(
        description="pass as `before` to get the next (older) page; null on the last page")


class AlarmOut(BaseModel):
    id: int
    site: str
    code: str
    severity: str
    seq: int | None
    txn: str | None
    detail: dict[str, Any]
    raised_at: datetime
    state: Literal["open", "acknowledged", "resolved"]
    ack_by: str | None
    ack_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    note: str | None


class ResolveIn(_In):
    note: str = Field(min_length=1, max_length=2000,
                      description="what was found and done", examples=["司机已返回补票，已处罚"])


class ProofOut(BaseModel):
    """An entry with its RFC 6962 inclusion proof in the site's latest cosigned checkpoint.

    Verify: hash = SHA-256(0x00 ‖ leaf); the Ed25519 signature over leaf with the site key;
    the proof from (leaf_index, tree_size, hash) to root; root and size against the checkpoint
    note, signed by the site and cosigned by the central witness."""

    site: str
    seq: int
    leaf: str = Field(description="the entry's canonical JSON (RFC 8785), the signed bytes")
    entry_hash: str = Field(description="base64 SHA-256(0x00 ‖ leaf)")
    signature: str = Field(description="base64 Ed25519 signature of leaf by the site key")
    leaf_index: int
    tree_size: int
    root_hash: str = Field(description="base64 Merkle root of the first tree_size entries")
    inclusion_proof: list[str] = Field(description="base64 hashes, RFC 9162 §2.1.3 order")
    checkpoint: str = Field(description="the site's signed checkpoint note with our cosignature")
    verifier_key: str


class TonnageRow(BaseModel):
    site: str
    site_name: str
    coal_type: str | None = Field(description="null when the weighing named no coal type")
    net_kg: int = Field(description="net of every released load: by the gate's decision and "
                                    "by hand (voided weighings never count)")
    trucks: int
    by_hand_net_kg: int = Field(default=0, description="of net_kg: loads held by the gate and "
                                                       "released by hand (operator override)")
    by_hand_trucks: int = 0


class TonnageOut(BaseModel):
    day: date
    timezone: str
    rows: list[TonnageRow]
