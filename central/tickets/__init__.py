"""Central-side e-ticket logic: pure rules now; issuance API and distribution build on them."""
