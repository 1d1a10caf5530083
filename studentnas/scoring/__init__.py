"""The maths proxies and KD losses share: tensor similarities and the cached zero-cost / teacher-student passes.

May import: ``core``. Used by the plugins in ``proxies/`` and by ``distill.losses``; never imports a plugin.
"""
