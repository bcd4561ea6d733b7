"""The operator console (司磅员): a local web page served by the agent, no CDN."""
