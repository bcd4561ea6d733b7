"""The printable weigh slip (磅单) for one weighing entry. Pure: entry in, HTML out."""

from __future__ import annotations

import base64
import html
from typing import Any

import segno

SLIP_PREFIX = "CGW1:"


def slip_qr_text(site: str, seq: int, entry_hash: bytes) -> str:
    """What the slip's QR carries: site, seq and the entry hash (base64url, no padding).

    Anyone with the site's public key can fetch the entry and its inclusion proof and check it.
    """
    h = base64.urlsafe_b64encode(entry_hash).decode().rstrip("=")
    return f"{SLIP_PREFIX}{site}/{seq}/{h}"


def _kg(v: Any) -> str:
    return "—" if v is None else f"{int(v):,} kg"


def render_slip(site: str, site_name: str, seq: int, ts: str, body: dict[str, Any],
                entry_hash: bytes) -> str:
    qr_text = slip_qr_text(site, seq, entry_hash)
    svg = segno.make(qr_text, error="m").svg_inline(scale=4, dark="#000")
    e = html.escape
    pass_zh = {"tare": "皮重（空车）", "gross": "毛重（重车）", "one_pass": "一次过磅"}
    rows = [
        ("磅单号 Txn", e(str(body.get("txn")))),
        ("车牌 Plate", e(str(body.get("plate")))),
        ("过磅 Pass", e(pass_zh.get(str(body.get("pass")), str(body.get("pass"))))),
        ("轴数 Axles", e(str(body.get("axles")))),
        ("毛重 Gross", _kg(body.get("gross_kg"))),
        ("皮重 Tare", _kg(body.get("tare_kg"))),
        ("净重 Net", _kg(body.get("net_kg"))),
        ("限重 Limit", _kg(body.get("limit_kg"))),
        ("煤票 Ticket", e(str(body.get("ticket_id") or "—"))),
        ("结论 Decision", "放行 release" if body.get("decision") == "release"
         else "扣留 hold: " + e(", ".join(body.get("reasons") or []))),
        ("时间 Time (UTC)", e(ts)),
        ("账本序号 Seq", str(seq)),
    ]
    trs = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>磅单 {e(str(body.get('txn')))}</title>
<link rel="stylesheet" href="/static/slip.css"></head>
<body><main class="slip">
<h1>{e(site_name or site)}<br><small>过磅单 / Weigh slip</small></h1>
<table>{trs}</table>
<div class="qr">{svg}<p class="mono">{e(qr_text)}</p>
<p>扫码可验证此磅单未被篡改 · Scan to verify this record</p></div>
<button class="noprint" onclick="window.print()">打印 Print</button>
</main></body></html>"""
