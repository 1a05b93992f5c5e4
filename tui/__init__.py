"""waylay tui."""
