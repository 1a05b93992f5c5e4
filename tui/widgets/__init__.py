"""The main view's panes, one widget per module."""
