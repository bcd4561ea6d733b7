"""``coalgate ledger``: keys, append, checkpoint, verify, prove, export.

Each command opens the store, calls one library method and turns ``LedgerError`` into a
message on stderr and a non-zero exit; the library does the work.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.entry import parse_json_body
from ledger.errors import LedgerError
from ledger.keys import SignerKey, read_signer_file, read_verifier, write_signer_file
from ledger.note import parse_note
from ledger.store import LedgerStore

app = typer.Typer(
    help="Signed, hash-chained ledger: keys, append, verify, prove, export.",
    no_args_is_help=True,
    add_completion=False,
)

DbArg = Annotated[Path, typer.Argument(help="Path of the site's SQLite ledger file.")]
SignerOpt = Annotated[
    Path, typer.Option("--key", help="Signer key file (mode 0600) made by 'ledger keygen'.")
]


def _fail(exc: object, code: int = 1) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    # SystemExit, not typer.Exit: it exits quietly however this app is mounted (typer vendors
    # its own click, whose Exit class a plain click root group does not recognise).
    sys.exit(code)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@app.command()
def keygen(
    name: Annotated[str, typer.Option(help="Key name, e.g. the site id 'mine-a'.")],
    out: Annotated[Path, typer.Option(help="Where to write the signer key (created 0600).")],
) -> None:
    """Create an Ed25519 signer key file and print its verifier (public) key.

    Example: coalgate ledger keygen --name mine-a --out /etc/coalgate/mine-a.key
    """
    try:
        key = SignerKey.generate(name)
        write_signer_file(out, key)
    except (LedgerError, OSError) as exc:
        _fail(exc)
    typer.echo(key.verifier.to_text())


@app.command()
def append(
    db: DbArg,
    key: SignerOpt,
    kind: Annotated[str, typer.Option(help="Entry kind: weighing, alarm, override, config…")],
    body: Annotated[str, typer.Option(help="Entry body as a JSON object; integers only.")],
    site: Annotated[
        str | None, typer.Option(help="Site id; required when the ledger file is new.")
    ] = None,
) -> None:
    """Append one signed entry and print it (leaf, hash, sig) as JSON once it is durable.

    Example: coalgate ledger append site.db --key mine-a.key --site mine-a --kind override
    --body '{"txn": null, "action": "void", "operator": "li", "reason": "test truck"}'
    """
    try:
        parsed = parse_json_body(body)
        signer = read_signer_file(key)
        with LedgerStore.open(db, site=site, signer=signer) as store:
            se = store.append(kind, parsed)
    except LedgerError as exc:
        _fail(exc)
    typer.echo(json.dumps({"seq": se.entry.seq, **se.to_wire()}, ensure_ascii=False))


@app.command()
def checkpoint(db: DbArg, key: SignerOpt) -> None:
    """Sign a checkpoint (tlog-checkpoint note) of the ledger as it is now, store and print it.

    Example: coalgate ledger checkpoint site.db --key mine-a.key
    """
    try:
        signer = read_signer_file(key)
        with LedgerStore.open(db, signer=signer) as store:
            note = store.sign_checkpoint()
    except LedgerError as exc:
        _fail(exc)
    typer.echo(note, nl=False)


@app.command()
def verify(
    db: DbArg,
    key: Annotated[
        str, typer.Option("--key", help="Site verifier key: its text or a file holding it.")
    ],
) -> None:
    """Audit the whole ledger; exit 0 when intact, 1 naming the first bad seq otherwise.

    Checks canonical form, hashes, the prev chain, signatures, gapless seq, the site field,
    the stored Merkle nodes, and every stored checkpoint against the log.

    Example: coalgate ledger verify site.db --key 'mine-a+1a2b3c4d+AX…'
    """
    try:
        verifier = read_verifier(key)
        with LedgerStore.open(db) as store:
            report = store.verify(verifier)
    except LedgerError as exc:
        _fail(f"{exc}\nverify: FAILED (the ledger could not be audited)")
    if not report.ok:
        where = f"seq {report.first_bad_seq}" if report.first_bad_seq is not None else "log"
        typer.echo(
            f"verify: FAILED at {where}: {report.problem}\n"
            f"({report.checked_entries} entries before it verified)",
            err=True,
        )
        sys.exit(1)
    root = _b64(report.root or b"")
    typer.echo(
        f"verify: OK — {report.size} entries, {report.checked_checkpoints} checkpoints, "
        f"root {root}"
    )


@app.command()
def prove(
    db: DbArg,
    seq: Annotated[int, typer.Option(help="Entry to prove.")],
    size: Annotated[
        int | None, typer.Option(help="Tree size to prove against (default: latest checkpoint "
                                      "if it covers seq, else the whole ledger).")
    ] = None,
) -> None:
    """Print an RFC 6962 inclusion proof for one entry as JSON.

    Example: coalgate ledger prove site.db --seq 41 --size 100
    """
    try:
        with LedgerStore.open(db) as store:
            chosen = size
            note = store.latest_checkpoint()
            if chosen is None and note is not None:
                cp = Checkpoint.from_text(parse_note(note)[0])
                chosen = cp.size if cp.size > seq else None
            if chosen is None:
                chosen = store.size
            se = store.get(seq)
            out = {
                "seq": seq,
                "size": chosen,
                "leaf_hash": _b64(se.hash),
                "root": _b64(store.root(chosen)),
                "proof": [_b64(h) for h in store.inclusion_proof(seq, chosen)],
                "entry": se.to_wire(),
            }
    except LedgerError as exc:
        _fail(exc)
    typer.echo(json.dumps(out, ensure_ascii=False, indent=2))


@app.command()
def export(
    db: DbArg,
    out: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Write the ledger as JSON lines for independent audit (see docs/ledger.md).

    One line per entry, ``{"leaf": <exact canonical text>, "hash": b64, "sig": b64}``, in seq
    order, then one ``{"checkpoint": <signed note>}`` line per stored checkpoint. Re-verify it
    without coalgate using scripts/verify_export.py.

    Example: coalgate ledger export site.db --out mine-a-2026-11.jsonl
    """
    try:
        with LedgerStore.open(db) as store:
            stream = out.open("w", encoding="utf-8") if out else sys.stdout
            try:
                for se in store.iter_entries():
                    stream.write(json.dumps(se.to_wire(), ensure_ascii=False) + "\n")
                for note in store.checkpoints():
                    stream.write(json.dumps({"checkpoint": note}, ensure_ascii=False) + "\n")
            finally:
                if out:
                    stream.close()
    except (LedgerError, OSError) as exc:
        _fail(exc)


@app.command("show-checkpoint")
def show_checkpoint(
    db: DbArg,
    key: Annotated[str, typer.Option("--key", help="Site verifier key text or file.")],
) -> None:
    """Verify and print the latest stored checkpoint (origin, size, root).

    Example: coalgate ledger show-checkpoint site.db --key mine-a.pub
    """
    try:
        verifier = read_verifier(key)
        with LedgerStore.open(db) as store:
            note = store.latest_checkpoint()
        if note is None:
            _fail("no checkpoint stored yet; sign one with 'coalgate ledger checkpoint'")
        cp = open_checkpoint(note, verifier)
    except LedgerError as exc:
        _fail(exc)
    typer.echo(json.dumps({"origin": cp.origin, "size": cp.size, "root": _b64(cp.root_hash)}))
