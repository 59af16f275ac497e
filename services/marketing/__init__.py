"""socialzone marketing service: Advocate scoring, tiers, rewards, gaming detection, segments and campaigns."""
