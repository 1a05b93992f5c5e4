"""waylay sandbox."""
