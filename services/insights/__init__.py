"""socialzone insights service: Time series, share of voice, keyword trackers, KPIs and crisis alerts."""
