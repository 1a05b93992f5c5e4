"""waylay webhook."""
