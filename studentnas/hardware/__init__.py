"""Hardware cost: counting MACs/params, CPU latency (measured, cached, or from a layer table), memory, stage breakdown.

May import: ``core``, ``runfiles``.
"""
