"""Studies that judge the tool on real distillations: search quality (proxy rank vs KD accuracy) and KD vs CE.

May import: everything but ``cli``.
"""
