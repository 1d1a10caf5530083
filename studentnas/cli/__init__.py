"""The ``studentnas`` command line and its human-facing output: argparse commands, tables, reports.

May import: everything. Nothing imports it (the engine reports through ``core.console``).
"""
