"""Run files and provenance: atomic writes, append-only JSONL journals, the provenance record, model files.

May import: ``core``. Every package that writes to disk goes through here.
"""
