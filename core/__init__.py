"""waylay core."""
