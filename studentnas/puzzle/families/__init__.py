"""Puzzle teacher families, one file each (resnet, vit, gpt); they register in ``FAMILIES`` on import."""
