"""A small decoder-only language model over bytes, a real text corpus and LM training (``studentnas lm``).

May import: ``core``, ``runfiles``, ``data`` (independent of ``distill``; layered with it, above ``engine``).

Example:
    >>> from studentnas.lm import create_lm, is_lm
    >>> is_lm("gpt_tiny"), create_lm("gpt_tiny").config.dim
    (True, 128)
"""

from studentnas.lm.model import (
    GPT,
    LMS,
    MLP,
    Block,
    CausalSelfAttention,
    GPTConfig,
    create_lm,
    is_lm,
    lm_config,
    load_lm,
)

__all__ = ["GPT", "LMS", "MLP", "Block", "CausalSelfAttention", "GPTConfig", "create_lm", "is_lm", "lm_config",
           "load_lm"]
