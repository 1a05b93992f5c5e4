"""Modal screens: errors, confirmations, help, details, login, contexts."""
