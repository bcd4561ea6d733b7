"""Byte-exact encoders for the indicator protocols. Pure: readings in, bytes out."""
