"""Prefix caching: full KV blocks of shared prompt prefixes, computed once and reused.

vLLM's automatic prefix caching (its V1 engine, ``enable_prefix_caching``) and
SGLang's RadixAttention keep the KV blocks a prompt's prefix computed, so that a
later request whose prompt begins with the same tokens reads them instead of
prefilling them again. As vLLM does it:

- Only **full blocks** are cached, each named by its tokens and everything before it
  (vLLM hashes a block with its parent's hash): here block ``j`` of shared prefix
  ``p`` is the key ``(p, j)``, the same in every request whose prompt's first
  ``prefix_tokens`` are ``p``'s and cover the block whole.
- A request looks up its prompt's longest run of cached blocks from the first one on
  admission; a **hit** skips those tokens' prefill (attention still reads them). At
  least its prompt's last token is computed (vLLM recomputes it to sample the first
  token when the whole prompt is cached), so at most ``prompt - 1`` tokens hit.
- A block a request computes is registered as soon as it is full (vLLM caches full
  blocks after every step), so a request admitted while another is still prefilling
  the same prefix finds the blocks already done. A block whose key is already cached
  (two requests computed it in the same iterations) stays the request's own.
- A cached block is **kept while referenced** by a request, and when none references
  it joins the free blocks as **evictable**: a request needing a block takes a free
  one first, then evicts the least recently released cached block (vLLM's free block
  queue, an LRU; a request's blocks are released last block first, so its prefix's
  tail is evicted before its head).

Prefix caching keeps blocks in HBM (``kv_tier: hbm``) and preempts by recompute (vLLM
V1's only mode): :class:`~mcdla.config.serving.ServingSpec` refuses the others.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PrefixCache"]


class PrefixCache:
    """One serving instance's cached prefix blocks (see the module docstring): the
    requests referencing each block, the unreferenced ones in eviction order, and the
    counts the result reports."""

    def __init__(self, block_tokens: int):
        self.block_tokens = block_tokens
        self.refs: dict[tuple, int] = {}  # cached block -> requests referencing it
        self.evictable: OrderedDict = OrderedDict()  # unreferenced cached blocks, least recently released first
        self.hit_tokens = 0  # prompt tokens found cached on admission (prefill skipped)
        self.queried_tokens = 0  # prompt tokens of the admissions that looked up
        self.evictions = 0

    def lookup(self, prefix_id: str | None, prefix_tokens: int, target: int) -> tuple:
        """The cached blocks a prefill of ``target`` tokens whose first ``prefix_tokens``
        are ``prefix_id``'s can reuse: the longest run from block 0 (at most ``target - 1``
        tokens: the last one is computed to sample)."""
        if prefix_id is None:
            return ()
        hits = []
        for j in range(min(prefix_tokens, target - 1) // self.block_tokens):
            if (prefix_id, j) not in self.refs:
                break
            hits.append((prefix_id, j))
        return tuple(hits)

    def spare(self, hits) -> int:
        """Evictable blocks an allocation may take, those it is about to reuse aside."""
        return len(self.evictable) - sum(1 for key in hits if key in self.evictable)

    def take(self, hits) -> None:
        """A request now references ``hits``."""
        for key in hits:
            if self.refs[key] == 0:
                del self.evictable[key]
            self.refs[key] += 1

    def evict(self, blocks: int) -> None:
        """Frees the ``blocks`` least recently released cached blocks."""
        for _ in range(blocks):
            key, _ = self.evictable.popitem(last=False)
            del self.refs[key]
        self.evictions += blocks

    def release(self, keys) -> None:
        """A request no longer references ``keys``: the unreferenced become evictable,
        the last block first (evicted before the blocks in front of it)."""
        for key in reversed(keys):
            self.refs[key] -= 1
            if self.refs[key] == 0:
                self.evictable[key] = None

    def register(self, prefix_id: str | None, prefix_tokens: int, computed: int, held: list) -> int:
        """Caches the full prefix blocks a request has computed beyond the ``held`` ones it
        references (appended to ``held``); returns how many of its own blocks became cached."""
        if prefix_id is None:
            return 0
        added = 0
        for j in range(len(held), min(computed, prefix_tokens) // self.block_tokens):
            key = (prefix_id, j)
            if key in self.refs:  # computed by another request meanwhile: this copy stays its own
                break
            self.refs[key] = 1
            held.append(key)
            added += 1
        return added

    def referenced(self) -> int:
        """Cached blocks some request still references."""
        return len(self.refs) - len(self.evictable)
