"""The training-free search: setup and checks, the ask/evaluate/tell driver, Ray pool, run directory, pick, export.

May import: core, runfiles, scoring, hardware, data (searchers, spaces and proxies only via registries).
"""
