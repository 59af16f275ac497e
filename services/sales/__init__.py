"""socialzone sales service: Leads from purchase intent and referrals, lead scoring, pipeline and deals."""
