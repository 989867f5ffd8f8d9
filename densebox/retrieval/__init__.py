"""Embedding stores on disk: float16 chunks + a JSON manifest, written resumably, read
memory-mapped, searched exactly by cosine (:mod:`densebox.retrieval.store`)."""
from .store import EmbeddingStore, EmbeddingStoreWriter, topk_cosine

__all__ = ['EmbeddingStore', 'EmbeddingStoreWriter', 'topk_cosine']
