"""Embedding stores and exact nearest-neighbour search, with no dependency beyond numpy and
torch.

    from densebox.retrieval import EmbeddingStore, EmbeddingWriter

    with EmbeddingWriter('index/', dim=768, normalize=True) as writer:   # resumable
        for batch in batches[writer.count // batch_size:]:
            writer.add(embed(batch))                                    # (N, 768)
    store = EmbeddingStore('index/')                                    # memory-mapped
    scores, ids = store.search(queries, k=50)                           # (Q, 50) each

:mod:`densebox.retrieval.store`: the on-disk format (float16 chunk files + a JSON
manifest; appended and resumed chunk by chunk; read memory-mapped).
:mod:`densebox.retrieval.search`: exact top-k by inner product or cosine in bounded memory.
"""
from .search import METRICS, SearchResult, brute_force, same_topk, search
from .store import EmbeddingStore, EmbeddingWriter, read_manifest

__all__ = ['EmbeddingStore', 'EmbeddingWriter', 'read_manifest', 'search', 'SearchResult',
           'brute_force', 'same_topk', 'METRICS']
