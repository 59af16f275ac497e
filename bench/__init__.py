"""Benchmarks: ``make bench`` runs all, ``make bench BENCH=bus`` one of them."""
