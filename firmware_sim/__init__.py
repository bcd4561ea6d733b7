"""firmware_sim package."""
