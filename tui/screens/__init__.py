"""Full screens: the main view and the intercept wizard."""
