"""``python -m central.ingest --config FILE``: the same as ``coalgate central ingest``."""

import typer

from central.ingest.cli import ingest

if __name__ == "__main__":
    typer.run(ingest)
