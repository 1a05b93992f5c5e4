"""The intercept wizard's logic (steps, validation), free of any UI."""
