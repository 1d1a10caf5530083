"""Puzzle teacher families, one file each (resnet, vit, gpt); they register in ``FAMILIES`` on import.

May import: what ``puzzle`` may (they build blocks of timm and ``lm`` models).
"""
