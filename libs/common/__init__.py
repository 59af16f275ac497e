"""socialzone platform library: what every service shares and nothing department-specific."""
