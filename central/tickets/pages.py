"""Public pages: the driver's ticket page, its QR downloads, the slip check, the sales form.

Mounted at the site root (not under /api/v1): ``app.include_router(pages_router)``.

- ``/t/<token>``: the driver page (mobile first, Chinese default, ``?lang=en``). The token is
  128+ random bits, so the page is public yet unguessable. After weighing it shows the signed
  weigh slip (装载证明) with its own QR.
- ``/t/<token>/qr.png|svg|pdf``: the ticket QR for printing.
- ``/v/<site>/<seq>/<entry hash>``: anyone scanning a slip gets the ledger entry, its inclusion
  proof against the latest witness-cosigned checkpoint, and the checks done here (``?format=
  json`` for the raw proof to check offline). ``/v?q=CGW1:...`` resolves the gate's printed
  slip code.
- ``/tickets/new``: the issuance form for sales offices (static HTML + JS, no CDN): issue, see
  the recent tickets, and void an unused one (reason required, confirmed in a second step),
  all through the JSON API with the office's token, so the API's role checks apply.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from central.api.deps import Conn
from central.api.routers.proofs import entry_proof
from central.auth import Principal
from central.tickets.api import TicketSettingsDep
from central.tickets.errors import TicketNotFoundError
from central.tickets.service import TicketRecord, TicketUseRow, get_by_page_token
from ledger.checkpoint import open_checkpoint, verify_cosignature
from ledger.errors import LedgerError
from ledger.keys import VerifierKey
from ledger.merkle import verify_inclusion
from ledger.ticket import CHINA_OFFSET
from ledger.ticket_qr import FORMATS, make_qr, render_qr

__all__ = ["pages_router", "WEB_DIR", "slip_url"]

pages_router = APIRouter(include_in_schema=False)
WEB_DIR = Path(__file__).resolve().parent / "web"
SLIP_PREFIX = "CGW1:"  # the gate's printed slip code (edge_agent.console.slip)
# A public principal for the API engineer's proof code: the slip check reveals one entry to
# whoever holds its hash (printed on the slip), nothing more.
_PUBLIC = Principal(token_id=0, role="checkpoint", enterprise=None, label="public slip check")

_T = {
    "zh": {
        "title": "电子煤管票", "ticket": "票号", "plate": "车牌", "site": "装货磅房",
        "issuer": "签发单位", "buyer": "买方", "destination": "目的地", "coal": "煤种",
        "planned": "计划净重", "valid": "有效期", "period": "产能月份", "print": "打印二维码",
        "valid_state": "有效", "used": "已使用", "voided": "已作废", "expired": "已过期",
        "not_yet_valid": "未生效", "show": "请向司磅员出示此二维码",
        "cert": "装载证明（电子磅单）", "gross": "毛重", "tare": "皮重", "net": "净重",
        "axles": "轴数", "time": "过磅时间", "seq": "账本序号", "check": "扫码或点此验证",
        "switch": "English", "void_reason": "作废原因", "china_time": "北京时间",
        "not_found": "未找到该票据，请核对链接。", "reused": "注意：此票被使用多次",
    },
    "en": {
        "title": "E-ticket (coal)", "ticket": "Ticket", "plate": "Plate", "site": "Loading at",
        "issuer": "Issued by", "buyer": "Buyer", "destination": "Destination",
        "coal": "Coal type", "planned": "Planned net", "valid": "Valid",
        "period": "Quota month", "print": "Print the QR", "valid_state": "Valid",
        "used": "Used", "voided": "Voided", "expired": "Expired",
        "not_yet_valid": "Not yet valid", "show": "Show this code to the weighbridge operator",
        "cert": "Loading certificate (weigh slip)", "gross": "Gross", "tare": "Tare",
        "net": "Net", "axles": "Axles", "time": "Weighed at", "seq": "Ledger seq",
        "check": "Scan or tap to verify", "switch": "中文", "void_reason": "Reason",
        "china_time": "China time", "not_found": "No ticket at this address; check the link.",
        "reused": "Warning: this ticket was used more than once",
    },
}

_CSS = """
*{box-sizing:border-box}body{margin:0;font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei",
"PingFang SC",sans-serif;background:#f4f4f0;color:#111}main{max-width:520px;margin:0 auto;
padding:12px}h1{font-size:1.3rem;margin:.4rem 0}.badge{display:inline-block;padding:.25rem .8rem;
border-radius:1rem;font-weight:bold;color:#fff}.valid{background:#1a7f37}.used{background:#555}
.voided,.expired{background:#b42318}.not_yet_valid{background:#b54708}.qr{background:#fff;
padding:8px;border-radius:8px;text-align:center}.qr svg{width:min(92vw,480px);height:auto;
image-rendering:pixelated}.hint{text-align:center;font-size:1rem;margin:.3rem 0}table{width:100%;
border-collapse:collapse;background:#fff;margin:.6rem 0}th,td{padding:.45rem .5rem;border-bottom:
1px solid #ddd;text-align:left;font-size:1.05rem}th{width:38%;color:#444;font-weight:normal}
.big{font-size:1.5rem;font-weight:bold}.links a{margin-right:1rem}.slip{border:2px solid #1a7f37;
border-radius:8px;background:#fff;padding:8px;margin:1rem 0}.slip .qr svg{width:min(60vw,260px)}
.warn{background:#fee4e2;color:#b42318;padding:.5rem;border-radius:6px}.lang{float:right}
.mono{font-family:monospace;font-size:.75rem;word-break:break-all;white-space:pre-wrap}
"""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def slip_url(base: str, site: str, seq: int, entry_hash: bytes) -> str:
    return f"{base}/v/{site}/{seq}/{_b64url(entry_hash)}"


def _cst(dt: datetime) -> str:
    return (dt + CHINA_OFFSET).strftime("%Y-%m-%d %H:%M")


def _kg(v: int | None) -> str:
    return "—" if v is None else f"{v:,} kg"


def _lang(lang: str | None) -> str:
    return "en" if lang == "en" else "zh"


def _page(title: str, body: str, lang: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width,'
        f'initial-scale=1"><title>{html.escape(title)}</title><style>{_CSS}</style></head>'
        f"<body><main>{body}</main></body></html>",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _slip(conn: Any, base: str, use: TicketUseRow, t: dict[str, str], reused: bool) -> str:
    row = conn.execute("SELECT hash FROM entries WHERE site = %s AND seq = %s",
                       (use.site, use.seq)).fetchone()
    url = slip_url(base, use.site, use.seq, bytes(row[0])) if row else ""
    qr = ""
    if url:
        svg = make_qr(url, max_version=None).svg_inline(scale=4, border=2, omitsize=True)
        qr = (f'<div class="qr"><a href="{html.escape(url)}">{svg}</a>'
              f'<p><a href="{html.escape(url)}">{t["check"]}</a></p></div>')
    rows = [(t["gross"], _kg(use.gross_kg)), (t["tare"], _kg(use.tare_kg)),
            (t["net"], f'<span class="big">{_kg(use.net_kg)}</span>'),
            (t["axles"], html.escape(str(use.axles or "—"))),
            (t["site"], html.escape(use.site)),
            (t["time"], f"{_cst(use.ts)} ({t['china_time']})"),
            (t["seq"], str(use.seq))]
    trs = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    warn = f'<p class="warn">{t["reused"]}</p>' if reused else ""
    return (f'<section class="slip" data-slip="{use.site}/{use.seq}"><h2>{t["cert"]}</h2>'
            f"{warn}<table>{trs}</table>{qr}</section>")


def _driver_html(conn: Any, rec: TicketRecord, now: datetime, base: str, lang: str,
                 token: str) -> str:
    t = _T[lang]
    e = html.escape
    state = rec.state(now)
    label = t["valid_state"] if state == "valid" else t[state]
    svg = make_qr(rec.qr).svg_inline(scale=6, border=4, omitsize=True)
    site = conn.execute("SELECT name FROM sites WHERE id = %s", (rec.site,)).fetchone()
    site_name = f"{site[0]} ({rec.site})" if site else rec.site
    rows = [
        (t["ticket"], e(rec.id)), (t["plate"], f'<span class="big">{e(rec.plate)}</span>'),
        (t["site"], e(site_name)), (t["issuer"], e(rec.enterprise)),
        (t["buyer"], e(rec.buyer_name or rec.buyer)),
        (t["destination"], e(rec.destination_name or rec.destination)),
        (t["coal"], e(rec.coal_type)), (t["planned"], _kg(rec.planned_net_kg)),
        (t["valid"], f"{_cst(rec.valid_from)} – {_cst(rec.valid_to)} ({t['china_time']})"),
        (t["period"], e(rec.quota_period)),
    ]
    if rec.void_reason:
        rows.append((t["void_reason"], e(rec.void_reason)))
    trs = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    other = "zh" if lang == "en" else "en"
    slips = "".join(_slip(conn, base, u, t, len(rec.uses) > 1) for u in rec.uses)
    show_qr = state in ("valid", "not_yet_valid")
    qr_block = (f'<div class="qr" id="ticket-qr">{svg}</div><p class="hint">{t["show"]}</p>'
                if show_qr else "")
    links = " ".join(f'<a href="/t/{token}/qr.{f}" download>{f.upper()}</a>' for f in FORMATS)
    return (
        f'<a class="lang" href="?lang={other}">{t["switch"]}</a>'
        f'<h1>{t["title"]}</h1><p><span class="badge {state}" id="state">{label}</span></p>'
        f"{slips}{qr_block}<table>{trs}</table>"
        f'<p class="links">{t["print"]}: {links}</p>'
    )


def _base(settings: Any, request: Request) -> str:
    return str(settings.public_url or str(request.base_url)).rstrip("/")


@pages_router.get("/t/{token}", response_class=HTMLResponse)
def driver_page(token: str, request: Request, conn: Conn, settings: TicketSettingsDep,
                lang: str | None = None) -> HTMLResponse:
    lang = _lang(lang)
    try:
        rec = get_by_page_token(conn, token)
    except TicketNotFoundError:
        return HTMLResponse(_page(_T[lang]["title"], f"<p>{_T[lang]['not_found']}</p>",
                                  lang).body, status_code=404)
    body = _driver_html(conn, rec, settings.now(), _base(settings, request), lang, token)
    return _page(f"{_T[lang]['title']} {rec.id}", body, lang)


@pages_router.get("/t/{token}/qr.{fmt}")
def ticket_qr(token: str, fmt: str, conn: Conn,
              scale: int = Query(default=10, ge=2, le=40)) -> Response:
    if fmt not in FORMATS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"format must be one of {FORMATS}")
    try:
        rec = get_by_page_token(conn, token)
    except TicketNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    media = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}[fmt]
    return Response(render_qr(rec.qr, fmt, scale=scale), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{rec.id}.{fmt}"'})


@pages_router.get("/v")
def resolve_slip_code(request: Request, q: str) -> RedirectResponse:
    """``CGW1:<site>/<seq>/<hash>`` (the gate's printed slip) → the check page."""
    if not q.startswith(SLIP_PREFIX) or q.count("/") != 2:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            f"not a weigh-slip code: expected {SLIP_PREFIX}<site>/<seq>/<hash>")
    return RedirectResponse(f"/v/{q[len(SLIP_PREFIX):]}")


@pages_router.get("/v/{site}/{seq}/{entry_hash}")
def check_slip(site: str, seq: int, entry_hash: str, conn: Conn, settings: TicketSettingsDep,
               format: str = "html", lang: str | None = None) -> Response:
    """Resolve a slip's code to its ledger entry and inclusion proof, and check both."""
    lang = _lang(lang)
    try:
        want = base64.urlsafe_b64decode(entry_hash + "=" * (-len(entry_hash) % 4))
    except (binascii.Error, ValueError):
        want = b""
    row = conn.execute("SELECT hash FROM entries WHERE site = %s AND seq = %s",
                       (site, seq)).fetchone()
    if row is None or bytes(row[0]) != want:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "no stored ledger entry matches this slip (site, seq and hash); the slip was "
            "altered, forged, or the gate has not uploaded it yet")
    proof = entry_proof(site, seq, conn, _PUBLIC)  # 409 until a cosigned checkpoint covers it
    checks = _check_proof(proof.model_dump(), settings.witness)
    if format == "json":
        return JSONResponse({"proof": proof.model_dump(), "checks": checks,
                             "verified": all(ok for ok, _ in checks.values())})
    import json as _json

    body_json = _json.loads(proof.leaf).get("body", {})
    ok = all(v for v, _ in checks.values())
    verdict = (f'<span class="badge {"valid" if ok else "voided"}">'
               f'{"验证通过 / verified" if ok else "验证失败 / verification FAILED"}</span>')
    items = "".join(f"<li>{'✔' if v else '✘'} {html.escape(msg)}</li>"
                    for v, msg in checks.values())
    fields = [("gross_kg", "毛重 Gross"), ("tare_kg", "皮重 Tare"), ("net_kg", "净重 Net"),
              ("axles", "轴数 Axles"), ("plate", "车牌 Plate"), ("ticket_id", "煤票 Ticket"),
              ("txn", "磅单号 Txn")]

    def cell(key: str) -> str:
        value = body_json.get(key)
        if key.endswith("_kg") and isinstance(value, int):
            return _kg(value)
        return html.escape("—" if value is None else str(value))

    trs = "".join(f"<tr><th>{label}</th><td>{cell(k)}</td></tr>" for k, label in fields)
    when = html.escape(str(_json.loads(proof.leaf).get("ts", "")))
    page = (f"<h1>磅单验证 / Slip check</h1><p class='big' id='verdict'>{verdict}</p>"
            f"<p>{html.escape(site)} · seq {seq} · {when}</p>"
            f"<table>{trs}</table><ul>{items}</ul>"
            f"<p><a href='?format=json'>proof (JSON)</a></p>"
            f"<pre class='mono'>{html.escape(proof.checkpoint)}</pre>")
    return _page("磅单验证", page, lang)


def _check_proof(
    p: dict[str, Any], witness: VerifierKey | None
) -> dict[str, tuple[bool, str]]:
    """Re-check what the proof claims, independently of how the central stored it."""
    out: dict[str, tuple[bool, str]] = {}
    leaf = p["leaf"].encode("utf-8")
    entry_hash = base64.b64decode(p["entry_hash"])
    out["leaf_hash"] = (hashlib.sha256(b"\x00" + leaf).digest() == entry_hash,
                        "entry hash = SHA-256(0x00 ‖ leaf)")
    try:
        key = VerifierKey.from_text(p["verifier_key"])
        sig_ok = key.verify(leaf, base64.b64decode(p["signature"]))
    except LedgerError:
        key, sig_ok = None, False
    out["signature"] = (sig_ok, "entry signed by the site key / 站点密钥签名有效")
    try:
        verify_inclusion(p["leaf_index"], p["tree_size"], entry_hash,
                         [base64.b64decode(h) for h in p["inclusion_proof"]],
                         base64.b64decode(p["root_hash"]))
        incl = True
    except LedgerError:
        incl = False
    out["inclusion"] = (incl, f"inclusion proof in a tree of {p['tree_size']} entries")
    cp_ok = False
    if key is not None:
        try:
            cp = open_checkpoint(p["checkpoint"], key)
            cp_ok = cp.size == p["tree_size"] and cp.root_hash == base64.b64decode(p["root_hash"])
        except LedgerError:
            cp_ok = False
    out["checkpoint"] = (cp_ok, "root and size match the checkpoint signed by the site")
    if witness is not None:
        try:
            verify_cosignature(p["checkpoint"], witness)
            cosigned = True
        except LedgerError:
            cosigned = False
        out["witness"] = (cosigned, f"checkpoint cosigned by the witness {witness.name} / "
                                    "中心见证签名有效")
    return out


@pages_router.get("/tickets/new", response_class=HTMLResponse)
def issuance_form() -> FileResponse:
    return FileResponse(WEB_DIR / "form.html", media_type="text/html; charset=utf-8")


@pages_router.get("/tickets/static/{name}")
def form_asset(name: str) -> FileResponse:
    allowed = {"form.js": "text/javascript", "form.css": "text/css"}
    if name not in allowed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
    return FileResponse(WEB_DIR / name, media_type=allowed[name])
