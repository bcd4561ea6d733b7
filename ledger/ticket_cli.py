"""``coalgate ticket``: issue, verify and render e-tickets; build the issuer trust list.

Each command opens its inputs, calls one library function and turns typed errors into words.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import LedgerError
from ledger.keys import VerifierKey, read_signer_file, read_verifier
from ledger.note import parse_note
from ledger.ticket import (
    Ticket,
    default_quota_period,
    issue_ticket,
    loose_plate,
    parse_ticket,
    verify_ticket,
)
from ledger.ticket_errors import REASON_LABELS, TicketError, TrustListError
from ledger.ticket_qr import FORMATS, MAX_TICKET_VERSION, make_qr, render_qr
from ledger.trust import TRUST_HEADER, TrustList, format_time, parse_time

app = typer.Typer(
    help="Electronic coal tickets (电子煤管票): issue, verify, render QR, build trust lists.",
    no_args_is_help=True,
    add_completion=False,
)

EXIT_INVALID = 1
EXIT_ERROR = 2


def _fail(msg: str, code: int = EXIT_ERROR) -> SystemExit:
    # SystemExit rather than typer.Exit: it ends the process with ``code`` however the
    # command is mounted (Typer app, plain click group or CliRunner).
    typer.echo(f"error: {msg}", err=True)
    return SystemExit(code)


def _time(text: str | None, what: str) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        return parse_time(text, what)
    except TrustListError as exc:
        raise _fail(str(exc)) from None


def _ticket_text(text: str) -> str:
    return sys.stdin.read().strip("\r\n") if text == "-" else text


def load_trust(path: Path, root: str | None, *,
               insecure_any_root: bool = False) -> tuple[TrustList, bool]:
    """Read ``--trust FILE``: a signed trust list, or one issuer verifier key.

    Returns the list and whether its signature was checked against ``root``. A signed list
    without ``root`` is refused: anyone can sign a list, so only the bureau's root makes it
    mean something. ``insecure_any_root`` accepts it anyway, with a loud warning (tests). One
    issuer verifier key given directly is its own anchor (the caller chose that key).
    """
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise _fail(f"{path}: cannot read trust file ({exc.strerror})") from None
    try:
        if not text.startswith(TRUST_HEADER):
            if root is not None:
                raise _fail(f"{path}: is not a signed trust list, so --root does not apply")
            return TrustList.single(VerifierKey.from_text(text.strip())), False
        if root is not None:
            return TrustList.open(text, [read_verifier(root)]), True
        if not insecure_any_root:
            raise _fail(
                f"{path} is a signed trust list, and without --root nobody checks who signed "
                "it: anyone can write one that makes a forged ticket VALID. Give the bureau's "
                "trust-root verifier key: --root bureau-root.pub (key text or file). Only for "
                "tests: --insecure-any-root.\n"
                "错误：信任列表须用 --root（主管部门信任根公钥）校验签名，否则任何人都可伪造。"
            )
        typer.echo(
            "WARNING: --insecure-any-root: the trust list's signature is NOT checked; anyone "
            "could have written it, so a VALID verdict proves nothing about who issued the "
            "ticket.\n警告：未校验信任列表签名，结论不能证明票据真实。", err=True)
        body, _ = parse_note(text)
        return TrustList.from_text(body), False
    except LedgerError as exc:
        raise _fail(f"{path}: {exc}") from None


@app.command()
def verify(
    ticket: Annotated[str, typer.Argument(help="The CT1:... text, or - to read stdin.")],
    trust: Annotated[Path, typer.Option(help="Signed trust list, or one issuer verifier key.")],
    root: Annotated[
        str | None, typer.Option(help="Trust-root verifier key (text or file) for --trust.")
    ] = None,
    insecure_any_root: Annotated[
        bool, typer.Option("--insecure-any-root",
                           help="Accept a trust list without checking who signed it (testing "
                                "only: anyone can write such a list).")
    ] = False,
    now: Annotated[
        str | None, typer.Option(help="Check validity at this UTC time (default: now).")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Also require this loading site.")] = None,
    plate: Annotated[str | None, typer.Option(help="Also require this plate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Decode a ticket, check it, print it and the verdict; exit 1 when it is not valid.

    Example: coalgate ticket verify 'CT1:6BF...' --trust trust.note --root bureau.pub
    """
    text = _ticket_text(ticket)
    trust_list, checked = load_trust(trust, root, insecure_any_root=insecure_any_root)
    at = _time(now, "--now")
    decoded: Ticket | None = None
    reason, detail = "ok", ""
    try:
        decoded = parse_ticket(text).ticket
        decoded = verify_ticket(text, trust_list, now=at)
    except TicketError as exc:
        reason, detail = exc.reason, str(exc)
    if reason == "ok" and decoded is not None:
        if site is not None and decoded.site != site:
            reason, detail = "wrong_site", f"ticket is for site {decoded.site}, not {site}"
        elif plate is not None and loose_plate(decoded.plate) != loose_plate(plate):
            reason, detail = "wrong_plate", f"ticket is for {decoded.plate}, not {plate}"
    zh, en = REASON_LABELS[reason]
    if as_json:
        out = {
            "ok": reason == "ok",
            "reason": reason,
            "detail": detail,
            "trust_list_checked": checked,
            "ticket": decoded.to_json() if decoded else None,
        }
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        if not checked:
            typer.echo("WARNING: trust list signature NOT checked (give --root)", err=True)
        if decoded is not None:
            labels = {
                "ticket_id": "票号 ticket", "issuer": "签发单位 issuer", "site": "站点 site",
                "plate": "车牌 plate", "buyer": "购买方 buyer", "destination": "目的地 destination",
                "coal_type": "煤种 coal type", "planned_net_kg": "计划净重 planned net (kg)",
                "quota_period": "指标月份 quota period", "valid_from": "生效 valid from",
                "valid_to": "失效 valid to", "issued_at": "签发 issued at",
            }
            for key, value in decoded.to_json().items():
                typer.echo(f"{labels[key]:<28} {value}")
        verdict = "VALID" if reason == "ok" else "INVALID"
        typer.echo(f"{verdict}: {reason} — {zh} / {en}")
        if detail:
            typer.echo(f"  {detail}")
    if reason != "ok":
        raise SystemExit(EXIT_INVALID)


@app.command()
def qr(
    ticket: Annotated[str, typer.Argument(help="The CT1:... text, or - to read stdin.")],
    out: Annotated[Path, typer.Option(help="Output file; .png, .svg or .pdf.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="png, svg or pdf (default: from --out).")
    ] = None,
    scale: Annotated[int, typer.Option(min=1, max=40, help="Pixels (points) per module.")] = 8,
    allow_large: Annotated[
        bool, typer.Option(help=f"Allow codes above version {MAX_TICKET_VERSION}.")
    ] = False,
) -> None:
    """Render a ticket's QR code (level Q) as PNG, SVG or PDF for phones and print.

    Example: coalgate ticket qr 'CT1:6BF...' --out ticket.png
    """
    text = _ticket_text(ticket)
    kind = (fmt or out.suffix.lstrip(".")).lower()
    if kind not in FORMATS:
        raise _fail(f"cannot tell the format of {out}; use --format {'/'.join(FORMATS)}")
    try:
        parse_ticket(text)
        data = render_qr(text, kind, scale=scale,
                         max_version=None if allow_large else MAX_TICKET_VERSION)
    except TicketError as exc:
        raise _fail(str(exc)) from None
    out.write_bytes(data)
    version = make_qr(text, max_version=None).version
    typer.echo(f"wrote {out} ({kind}, QR version {version}, level Q)")


@app.command()
def issue(
    key: Annotated[Path, typer.Option(help="Issuer signer key file (mode 0600).")],
    ticket_id: Annotated[str, typer.Option("--id", help="Ticket id, e.g. T2611050123.")],
    issuer: Annotated[str, typer.Option(help="Issuing enterprise id (as in the trust list).")],
    site: Annotated[str, typer.Option(help="Loading site (gate) id.")],
    plate: Annotated[str, typer.Option(
        help="Truck plate, e.g. 陕K8A3B2 (陕k·8a3b2 is normalised; not a plate: exit 2).")],
    buyer: Annotated[str, typer.Option(help="Buyer (short name or id).")],
    destination: Annotated[str, typer.Option(help="Destination.")],
    coal_type: Annotated[str, typer.Option(help="Coal type, e.g. 洗混煤.")],
    planned_kg: Annotated[int, typer.Option(help="Planned net weight in kg.")],
    valid_hours: Annotated[int, typer.Option(min=1, help="Hours valid from --valid-from.")] = 48,
    valid_from: Annotated[str | None, typer.Option(help="UTC start (default: issue time).")] = None,
    issued_at: Annotated[str | None, typer.Option(help="UTC issue time (default: now).")] = None,
    quota_period: Annotated[
        str | None, typer.Option(help="YYYY-MM (default: month of issue, China time).")
    ] = None,
    compress: Annotated[bool | None, typer.Option(help="Force zlib on or off.")] = None,
    allow_large: Annotated[
        bool, typer.Option(help=f"Allow codes above QR version {MAX_TICKET_VERSION}.")
    ] = False,
) -> None:
    """Sign a ticket and print its CT1: text (integrators and tests).

    In production the central issues tickets against the mine's quota.

    Example: coalgate ticket issue --key mine.key --id T2611050123 --issuer E610821001
    --site S61082101 --plate 陕K8A3B2 --buyer 鑫源兰炭 --destination 保德县
    --coal-type 洗混煤 --planned-kg 34500
    """
    # The central's plate rule (the gate's grammar), so a ticket signed here names the plate
    # exactly as the gate reads it. Imported here: only this command needs it.
    from central.plates import PlateError, check_plate

    try:
        plate = check_plate(plate, "--plate")
    except PlateError as exc:
        raise _fail(str(exc)) from None
    try:
        signer = read_signer_file(key)
        at = _time(issued_at, "--issued-at")
        start = _time(valid_from, "--valid-from") if valid_from else at
        ticket = Ticket(
            ticket_id=ticket_id, issuer=issuer, site=site, plate=plate, buyer=buyer,
            destination=destination, coal_type=coal_type, planned_net_kg=planned_kg,
            quota_period=quota_period or default_quota_period(at),
            valid_from=start, valid_to=start + timedelta(hours=valid_hours), issued_at=at,
        )
        text = issue_ticket(ticket, signer, compress=compress)
        make_qr(text, max_version=None if allow_large else MAX_TICKET_VERSION)
    except LedgerError as exc:
        raise _fail(str(exc)) from None
    typer.echo(text)


@app.command("trust")
def trust_cmd(
    root_key: Annotated[Path, typer.Option(help="Trust-root signer key file (the bureau's).")],
    out: Annotated[Path, typer.Option(help="Where to write the signed trust list.")],
    base: Annotated[
        Path | None, typer.Option("--from", help="Existing signed list to change.")
    ] = None,
    add: Annotated[
        list[str] | None, typer.Option(help="ISSUER=VERIFIER (key text or file); repeatable.")
    ] = None,
    not_before: Annotated[
        str | None, typer.Option(help="UTC time added keys start covering (default: now).")
    ] = None,
    retire: Annotated[
        list[str] | None, typer.Option(help="KEYID=UTC-TIME: stop a key (rotation).")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option(help="KEYID: drop a compromised key.")
    ] = None,
    max_validity_days: Annotated[
        int | None, typer.Option(min=1, max=366, help="Longest ticket validity allowed.")
    ] = None,
) -> None:
    """Build or change the issuer trust list and sign it with the trust-root key.

    Example: coalgate ticket trust --root-key bureau.key --out trust.note
    --add E610821001=mine-a.pub
    """
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        root = read_signer_file(root_key)
        if base is not None:
            current = TrustList.open(base.read_text("utf-8"), [root.verifier])
        else:
            current = TrustList(0, now, ())
        start = _time(not_before, "--not-before") if not_before else now
        for spec in add or []:
            issuer, sep, key_text = spec.partition("=")
            if not sep:
                raise _fail(f"--add {spec!r}: expected ISSUER=VERIFIER")
            current = current.add_key(issuer, read_verifier(key_text), start, now=now)
        for spec in retire or []:
            kid, sep, when = spec.partition("=")
            if not sep:
                raise _fail(f"--retire {spec!r}: expected KEYID=2026-12-01T00:00:00Z")
            current = current.retire_key(_kid(kid), parse_time(when, "--retire"), now=now)
        for kid in remove or []:
            current = current.remove_key(_kid(kid), now=now)
        if max_validity_days is not None:
            current = TrustList(current.serial + 1, now, current.keys, max_validity_days)
        TrustList.from_text(current.to_text())  # the list we sign must parse back
        note = current.sign([root])
    except LedgerError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{exc.filename}: {exc.strerror}") from None
    out.write_text(note, "utf-8")  # public: gates and anyone verifying tickets read it
    typer.echo(f"wrote {out}: serial {current.serial}, {len(current.keys)} key(s), "
               f"issued {format_time(current.issued)}")


def _kid(text: str) -> bytes:
    try:
        kid = bytes.fromhex(text)
    except ValueError:
        kid = b""
    if len(kid) != 4:
        raise _fail(f"key id {text!r} must be 8 hex digits (see the trust list)")
    return kid

