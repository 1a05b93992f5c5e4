"""waylay agent."""
