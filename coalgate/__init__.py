"""coalgate: signed, tamper-evident electronic coal tickets and weighbridge records."""

__version__ = "0.1.0"
