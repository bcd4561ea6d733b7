"""HTTP API of the central's e-tickets (mounted under /api/v1 by ``create_app``).

Enterprise tokens issue, list and void tickets of their own sites; the bureau (and admin) set
approved capacity per mine and month, the quota policy, and manage issuer keys; the trust list
is public. docs/tickets.md §9 has curl examples.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from central.api.deps import Conn, require_roles
from central.auth import Principal
from central.plates import Plate
from central.tickets import issuers, service
from central.tickets.errors import (
    CentralTicketError,
    IdempotencyConflictError,
    IssuerKeyNotFoundError,
    NoIssuerKeyError,
    QuotaRefusedError,
    SiteNotAllowedError,
    TicketInputError,
    TicketNotFoundError,
    TicketStateError,
    TrustRootMissingError,
)
from central.tickets.keystore import IssuerKeyStoreError
from central.tickets.settings import TicketSettings

__all__ = ["router", "ticket_settings", "TicketSettingsDep"]

router = APIRouter(prefix="/tickets", tags=["tickets"])


def ticket_settings(request: Request) -> TicketSettings:
    """``app.state.tickets`` if the service set it (``coalgate central serve`` does, at start),
    else read once from ``[tickets]`` of the app's central settings."""
    settings = getattr(request.app.state, "tickets", None)
    if settings is None:
        settings = TicketSettings.from_config(request.app.state.settings)
        request.app.state.tickets = settings
    assert isinstance(settings, TicketSettings)
    return settings


TicketSettingsDep = Annotated[TicketSettings, Depends(ticket_settings)]
Issuer = Annotated[Principal, Depends(require_roles("admin", "enterprise"))]
Bureau = Annotated[Principal, Depends(require_roles("admin", "bureau"))]
Viewer = Annotated[Principal, Depends(require_roles("admin", "bureau", "enterprise",
                                                    "checkpoint"))]


def _http(exc: CentralTicketError) -> HTTPException:
    code = {
        TicketInputError: 422,
        TicketNotFoundError: status.HTTP_404_NOT_FOUND,
        IssuerKeyNotFoundError: status.HTTP_404_NOT_FOUND,
        TicketStateError: status.HTTP_409_CONFLICT,
        IdempotencyConflictError: status.HTTP_409_CONFLICT,
        QuotaRefusedError: status.HTTP_409_CONFLICT,
        NoIssuerKeyError: status.HTTP_409_CONFLICT,
        SiteNotAllowedError: status.HTTP_403_FORBIDDEN,
        TrustRootMissingError: status.HTTP_503_SERVICE_UNAVAILABLE,
        IssuerKeyStoreError: status.HTTP_503_SERVICE_UNAVAILABLE,
    }.get(type(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, QuotaRefusedError):
        return HTTPException(code, {"message": str(exc), "quota": exc.status})
    return HTTPException(code, str(exc))


def _own_enterprise(user: Principal, asked: str | None) -> str:
    """The enterprise an enterprise token acts for; others must name one."""
    if user.role == "enterprise":
        assert user.enterprise is not None
        if asked is not None and asked != user.enterprise:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this token acts for enterprise {user.enterprise!r} only")
        return user.enterprise
    if asked is None:
        raise HTTPException(422,
                            "name the enterprise (field 'enterprise') the ticket is issued for")
    return asked


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IssueIn(_In):
    """One truck trip. Keep buyer/destination/coal type short (they go into the QR); put
    full registered names in buyer_name / destination_name."""

    site: str = Field(examples=["S61082101"], description="the loading weighbridge (site id)")
    plate: Plate = Field(max_length=32, examples=["陕K8A3B2"],
                         description="normalised (陕k·8a3b2 -> 陕K8A3B2), else 422")
    buyer: str = Field(min_length=1, max_length=64, examples=["鑫源兰炭"])
    destination: str = Field(min_length=1, max_length=64, examples=["保德县"])
    coal_type: str = Field(min_length=1, max_length=64, examples=["洗混煤"])
    planned_net_kg: int = Field(gt=0, lt=1_000_000, examples=[34500])
    valid_from: datetime | None = Field(default=None, description="default: now")
    valid_to: datetime | None = Field(default=None, description="default: valid_from + 48 h")
    quota_period: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                                     description="default: this month (China time)")
    enterprise: str | None = Field(default=None, description="admin only; enterprise tokens "
                                   "issue for their own enterprise")
    buyer_name: str | None = Field(default=None, max_length=200)
    destination_name: str | None = Field(default=None, max_length=200)


class VoidIn(_In):
    reason: str = Field(min_length=1, max_length=200, examples=["订单取消 order cancelled"])


class CapacityIn(_In):
    capacity_kg: int = Field(ge=0, examples=[150_000_000], description="approved capacity, kg")


class PolicyIn(_In):
    scope: str = Field(default="*", description="'*' for the deployment default, or an "
                       "enterprise id", examples=["*"])
    policy: str = Field(pattern="^(monitor|enforce)$", examples=["monitor"])


class IssuerKeyIn(_In):
    enterprise: str = Field(examples=["E610821001"])


def _page_url(settings: TicketSettings, request: Request, token: str) -> str:
    base = settings.public_url or str(request.base_url).rstrip("/")
    return f"{base}/t/{token}"


def _out(rec: service.TicketRecord, settings: TicketSettings, request: Request,
         now: datetime) -> dict[str, Any]:
    return {**rec.to_json(now), "page_url": _page_url(settings, request, rec.page_token)}


@router.post("", status_code=status.HTTP_201_CREATED, summary="Issue a ticket (enterprise)")
def issue_ticket(
    body: IssueIn, request: Request, response: Response, conn: Conn, user: Issuer,
    settings: TicketSettingsDep,
    idempotency_key: Annotated[str | None, Header(
        description="one per form fill (e.g. a UUID): a retry or second click with the same "
                    "key and body returns the first ticket (200) instead of issuing another; "
                    "the same key with a different body is refused with 409")] = None,
) -> dict[str, Any]:
    """Sign a ticket for one truck trip at one of the enterprise's sites. Under quota policy
    `enforce` a ticket past the remaining approved capacity is refused with 409 and a message
    giving capacity, weighed, reserved and remaining; under `monitor` it is issued. The plate
    is normalised (`陕k·8a3b2` → `陕K8A3B2`) or refused with 422."""
    enterprise = _own_enterprise(user, body.enterprise)
    now = settings.now()
    req = service.IssueRequest(
        enterprise=enterprise, site=body.site, plate=body.plate, buyer=body.buyer,
        destination=body.destination, coal_type=body.coal_type,
        planned_net_kg=body.planned_net_kg, valid_from=body.valid_from, valid_to=body.valid_to,
        quota_period=body.quota_period, buyer_name=body.buyer_name,
        destination_name=body.destination_name,
    )
    try:
        rec = service.issue(conn, req, who=user.name, now=now,
                            default_validity=settings.default_validity,
                            max_validity_days=settings.max_validity_days,
                            issuer_keys=settings.issuer_keys, idempotency_key=idempotency_key)
    except CentralTicketError as exc:
        raise _http(exc) from None
    if rec.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return _out(rec, settings, request, now)


@router.get("", summary="List tickets (newest first)")
def list_tickets(
    request: Request, conn: Conn, user: Viewer, settings: TicketSettingsDep,
    site: str | None = None,
    plate: Annotated[Plate | None, Query(description="plate, normalised first: 陕k·12345 "
                                         "finds 陕K12345; not a plate -> 422")] = None,
    state: Annotated[str | None, Query(pattern="^(valid|used|voided|expired|not_yet_valid)$")]
    = None,
    enterprise: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if user.role == "enterprise":
        enterprise = _own_enterprise(user, enterprise)
    now = settings.now()
    rows = service.list_tickets(conn, now=now, enterprise=enterprise, site=site, plate=plate,
                                state=state, limit=limit)
    return {"tickets": [_out(r, settings, request, now) for r in rows]}


@router.get("/trust-list", response_class=PlainTextResponse,
            summary="The published issuer trust list (public, signed note)")
def trust_list(conn: Conn) -> PlainTextResponse:
    """The signed note every gate verifies tickets against (docs/tickets.md §4). Public: it
    holds only verifier keys, signed by the energy bureau's trust-root key."""
    current = issuers.current_trust_list(conn)
    if current is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            "no trust list published yet: create an issuer key first")
    return PlainTextResponse(current[1], headers={"X-Trust-List-Serial": str(current[0])})


@router.get("/issuer-keys", summary="Issuer keys with their validity")
def list_keys(conn: Conn, user: Viewer) -> dict[str, Any]:
    enterprise = user.enterprise if user.role == "enterprise" else None
    return {"keys": [k.to_json() for k in issuers.list_issuer_keys(conn, enterprise)]}


@router.post("/issuer-keys", status_code=status.HTTP_201_CREATED,
             summary="Create or rotate an enterprise's issuer key (bureau)")
def create_key(body: IssuerKeyIn, conn: Conn, user: Bureau,
               settings: TicketSettingsDep) -> dict[str, Any]:
    """New key covering tickets issued from now; the enterprise's current key is retired now
    (tickets it signed stay valid until they expire). Publishes a new trust list."""
    try:
        row = issuers.create_issuer_key(conn, body.enterprise, settings.root_key,
                                        now=settings.now(),
                                        max_validity_days=settings.max_validity_days,
                                        store=settings.issuer_keys)
    except CentralTicketError as exc:
        raise _http(exc) from None
    return row.to_json()


@router.delete("/issuer-keys/{kid}", summary="Remove a compromised issuer key (bureau)")
def remove_key(kid: str, conn: Conn, user: Bureau, settings: TicketSettingsDep) -> dict[str, Any]:
    """Drops the key from the trust list: every ticket it signed fails at the gates."""
    try:
        row = issuers.remove_issuer_key(conn, kid, settings.root_key, now=settings.now(),
                                        max_validity_days=settings.max_validity_days)
    except CentralTicketError as exc:
        raise _http(exc) from None
    return row.to_json()


@router.get("/quota", summary="Quota status per mine (issued, used, remaining, 超产)")
def quota(conn: Conn, user: Annotated[Principal, Depends(require_roles("admin", "bureau",
                                                                       "enterprise"))],
          settings: TicketSettingsDep,
          period: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None,
          ) -> dict[str, Any]:
    """One row per mine for the month (default: this month in China time); `over` marks
    over-production (actual net weighed past approved capacity)."""
    from ledger.ticket import default_quota_period

    now = settings.now()
    period = period or default_quota_period(now)
    enterprise = user.enterprise if user.role == "enterprise" else None
    rows = service.quota_overview(conn, period, now=now, enterprise=enterprise)
    return {"period": period, "default_policy": service.get_policy(conn),
            "mines": [r.to_json() for r in rows]}


@router.put("/quota/{enterprise}/{period}", summary="Set approved capacity (bureau)")
def set_capacity(enterprise: str, period: str, body: CapacityIn, conn: Conn, user: Bureau,
                 settings: TicketSettingsDep) -> dict[str, Any]:
    try:
        service.set_capacity(conn, enterprise, period, body.capacity_kg, user.name)
        return service.quota_status(conn, enterprise, period, now=settings.now()).to_json()
    except CentralTicketError as exc:
        raise _http(exc) from None


@router.get("/policy", summary="Quota policies (default and per mine)")
def get_policies(conn: Conn, user: Bureau) -> dict[str, Any]:
    rows = conn.execute("SELECT scope, policy, updated_by FROM ticket_quota_policy"
                        " ORDER BY scope").fetchall()
    return {"policies": [{"scope": r[0], "policy": r[1], "updated_by": r[2]} for r in rows]}


@router.put("/policy", summary="Set the quota policy: monitor (default) or enforce (bureau)")
def set_policy(body: PolicyIn, conn: Conn, user: Bureau) -> dict[str, Any]:
    try:
        service.set_policy(conn, body.scope, body.policy, user.name)
    except CentralTicketError as exc:
        raise _http(exc) from None
    return {"scope": body.scope, "policy": body.policy}


@router.get("/{ticket_id}", summary="One ticket with its state and uses")
def get_ticket(ticket_id: str, request: Request, conn: Conn, user: Viewer,
               settings: TicketSettingsDep) -> dict[str, Any]:
    try:
        rec = service.get_ticket(conn, ticket_id)
    except CentralTicketError as exc:
        raise _http(exc) from None
    if user.role == "enterprise" and rec.enterprise != user.enterprise:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this token may see only tickets of {user.enterprise!r}")
    return _out(rec, settings, request, settings.now())


@router.post("/{ticket_id}/void", summary="Void an unused ticket")
def void_ticket(ticket_id: str, body: VoidIn, request: Request, conn: Conn,
                user: Annotated[Principal, Depends(require_roles("admin", "bureau",
                                                                 "enterprise"))],
                settings: TicketSettingsDep) -> dict[str, Any]:
    """The revocation reaches the ticket's gate over MQTT; a gate offline now gets it when it
    reconnects (persistent session), and refuses the ticket offline from then on."""
    try:
        rec = service.get_ticket(conn, ticket_id)
        if user.role == "enterprise" and rec.enterprise != user.enterprise:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this token may void only tickets of {user.enterprise!r}")
        now = settings.now()
        rec = service.void(conn, ticket_id, reason=body.reason, who=user.name, now=now)
    except CentralTicketError as exc:
        raise _http(exc) from None
    return _out(rec, settings, request, now)
