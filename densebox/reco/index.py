"""ReCo's image index: CLIP image embeddings of an unlabelled image folder.

``build_image_index(folder, out_dir, clip, ...)`` embeds every image under ``folder``
(recursively, sorted, by file extension) with the CLIP image tower, in batches from a
DataLoader, into an embedding store (:mod:`densebox.retrieval`: float16 chunks, a JSON
manifest, memory-mapped reads, exact top-k) whose metadata records what made them: the
CLIP's name and weights digest, the input size, the normalisation and a digest of the file
list, kept beside it in ``files.json`` (row i = file i). Started again on the same folder, it
resumes after the last finished chunk; with another CLIP or another folder it stops with an
error naming the difference. Files that cannot be decoded are skipped and counted (a warning
names the first ones): their rows are zero and never retrieved.

Images are prepared as CLIP prepares them: shorter side resized to ``image_size``
(bicubic), centre crop, CLIP's mean / std.

``ImageIndex`` opens an index for retrieval: :meth:`ImageIndex.topk` returns the paths of
the k images closest (cosine) to a text embedding.
"""
import hashlib
import os
import os.path as osp
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .fingerprint import weights_digest

__all__ = ['IMAGE_EXTENSIONS', 'list_images', 'build_image_index', 'ImageIndex', 'clip_meta',
           'load_rgb_224']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def list_images(folder: str) -> List[str]:
    """Image paths relative to ``folder``, sorted, found recursively by extension."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder} does not exist (see data/README.md, '
                                '"ReCo index images")')
    names = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                names.append(osp.relpath(osp.join(root, name), folder))
    if not names:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {folder}')
    return names


def _list_digest(names: Sequence[str]) -> str:
    h = hashlib.sha1()
    for n in names:
        h.update(n.encode())
        h.update(b'\0')
    return h.hexdigest()[:16]


def clip_meta(clip: torch.nn.Module, name: str) -> dict:
    """What identifies a CLIP in a manifest: its name and a digest of its weights."""
    return dict(name=str(name), weights=weights_digest(clip))


def _resize_crop(img, size: int):
    """PIL image -> shorter side ``size`` (bicubic), centre crop ``size`` x ``size``."""
    from PIL import Image
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                     Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _open_rgb(path: str):
    from PIL import Image, ImageOps
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return img.convert('RGB')


def load_rgb_224(path: str, size: int = 224) -> torch.Tensor:
    """(3, size, size) float RGB in [0, 1]: shorter side resized, centre-cropped (ReCo's
    preparation of retrieved images)."""
    img = _resize_crop(_open_rgb(path), size)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.).permute(2, 0, 1)


class _ImageFolder(Dataset):
    def __init__(self, folder: str, names: Sequence[str], size: int):
        self.folder, self.names, self.size = folder, list(names), int(size)
        self.mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        path = osp.join(self.folder, self.names[i])
        try:
            x = load_rgb_224(path, self.size)
        except Exception as err:  # unreadable: counted and reported by the caller
            return i, None, f'{type(err).__name__}: {err}'
        return i, (x - self.mean) / self.std, None


def _collate(items):
    ok = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, e) for i, x, e in items if x is None]
    images = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], images, bad


FILES = 'files.json'  # the index's image list, beside the store's manifest


def _check_metadata(out_dir: str, meta: dict) -> None:
    """An index folder that exists must have been made with ``meta``."""
    from densebox.retrieval import read_manifest
    if not osp.isfile(osp.join(out_dir, 'manifest.json')):
        return
    stored = read_manifest(out_dir).get('metadata') or {}
    diffs = [f'{k}: stored {stored.get(k)!r}, now {v!r}' for k, v in meta.items()
             if stored.get(k) != v]
    if diffs:
        raise ValueError(f'the ReCo index {out_dir} was made with other settings; use another '
                         'folder or delete it. Differences: ' + '; '.join(diffs))


@torch.no_grad()
def build_image_index(folder: str, out_dir: str, clip: torch.nn.Module, clip_name: str,
                      image_size: int = 224, batch_size: int = 64, num_workers: int = 2,
                      chunk_rows: int = 65536, device='cpu', progress: bool = True,
                      max_batches: Optional[int] = None) -> dict:
    """Embed the images of ``folder`` into the store ``out_dir`` (see the module docstring).

    Row i of the store is file i of ``files.json`` (sorted relative paths); a file that
    cannot be decoded gets an all-zero row, which retrieval never returns. A run that
    stops resumes after the last chunk written (:class:`densebox.retrieval.EmbeddingWriter`).

    Args:
        clip: an ``open_clip.CLIP`` (its ``encode_image`` is used).
        clip_name: what the manifest calls it (a zoo name or a model name + weights file).
        image_size: CLIP's input size (336 for ViT-L/14@336px).
        chunk_rows: rows per chunk file; resuming restarts at a chunk boundary.
        max_batches: stop after this many batches without finishing (tests of resuming).
    Returns:
        ``{'images': files, 'embedded': readable files embedded so far, 'skipped':
        unreadable files (this run), 'complete': bool}``.
    """
    import json

    from densebox.retrieval import EmbeddingStore, EmbeddingWriter
    names = list_images(folder)
    meta = dict(kind='reco-image-index', clip=clip_meta(clip, clip_name),
                image_size=int(image_size), mean=list(CLIP_MEAN), std=list(CLIP_STD),
                preprocess='resize-shorter-bicubic+center-crop',
                folder=osp.abspath(folder), files=len(names), files_digest=_list_digest(names))
    _check_metadata(out_dir, meta)
    os.makedirs(out_dir, exist_ok=True)
    files_path = osp.join(out_dir, FILES)
    if not osp.isfile(files_path):
        tmp = files_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(names, f)
        os.replace(tmp, files_path)
    clip = clip.to(device).eval()
    probe = torch.zeros(1, 3, image_size, image_size, device=device)
    dim = int(clip.encode_image(probe).shape[-1])
    skipped: List[Tuple[str, str]] = []
    with EmbeddingWriter(out_dir, dim=dim, normalize=True, chunk_rows=chunk_rows,
                         metadata=meta) as writer:
        start = writer.count
        loader = DataLoader(_ImageFolder(folder, names[start:], image_size),
                            batch_size=batch_size, num_workers=num_workers,
                            collate_fn=_collate, shuffle=False)
        bar = None
        if progress and start < len(names):
            from tqdm import tqdm
            bar = tqdm(total=len(names), initial=start, unit='img', desc='ReCo index')
        for b, (indices, images, bad) in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            rows = torch.zeros(len(indices) + len(bad), dim)
            first = min(indices + [i for i, _ in bad])
            if images is not None:
                rows[[i - first for i in indices]] = clip.encode_image(
                    images.to(device)).float().cpu()
            skipped += [(names[start + i], err) for i, err in bad]
            writer.add(rows)
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
    if skipped:
        examples = '; '.join(f'{n} ({e})' for n, e in skipped[:5])
        warnings.warn(f'ReCo index: skipped {len(skipped)} unreadable image(s) of '
                      f'{len(names)} under {folder}: {examples}')
    store = EmbeddingStore(out_dir)
    embedded = int(sum((store.norms(s, s + len(r)) > 0).sum() for s, r in store.blocks()))
    return dict(images=len(names), embedded=embedded, skipped=len(skipped),
                complete=len(store) == len(names))


class ImageIndex:
    """An index from :func:`build_image_index`, opened for retrieval.

    Args:
        root: the index folder.
        clip: the CLIP whose text tower queries it; its weights must be the ones that
            embedded the images (checked by digest; a mismatch is a ``ValueError``).
        clip_name: used in the error message only.
    """

    def __init__(self, root: str, clip: Optional[torch.nn.Module] = None,
                 clip_name: Optional[str] = None):
        import json

        from densebox.retrieval import EmbeddingStore
        if not osp.isfile(osp.join(root, FILES)):
            raise FileNotFoundError(f'{root} is not a ReCo image index (no {FILES}); build one '
                                    'with tools/reco.py index')
        self.store = EmbeddingStore(root)
        meta = self.store.metadata
        if meta.get('kind') != 'reco-image-index':
            raise ValueError(f'{root} is an embedding store but not a ReCo image index')
        with open(osp.join(root, FILES)) as f:
            self.files: List[str] = json.load(f)
        if len(self.store) != len(self.files):
            raise ValueError(f'the ReCo index {root} is unfinished ({len(self.store)} of '
                             f'{len(self.files)} images); run the same tools/reco.py index '
                             'command again to resume it')
        self.root = root
        self.folder = meta['folder']
        self.valid = np.concatenate([self.store.norms(s, s + len(r)) > 0
                                     for s, r in self.store.blocks()]) if len(self.store) \
            else np.zeros(0, bool)
        if clip is not None:
            digest = weights_digest(clip)
            if digest != meta['clip']['weights']:
                raise ValueError(
                    f'the ReCo index {root} was built with CLIP {meta["clip"]["name"]!r} '
                    f'(weights {meta["clip"]["weights"]}); it is queried with '
                    f'{clip_name or "another CLIP"} (weights {digest}). Query it with the '
                    'same CLIP, or build an index with this one.')

    @property
    def meta(self) -> dict:
        return self.store.metadata

    def __len__(self) -> int:
        """Images that could be embedded (unreadable files do not count)."""
        return int(self.valid.sum())

    def topk(self, text_embedding: torch.Tensor, k: int) -> Tuple[List[str], torch.Tensor]:
        """Paths (absolute) of the ``k`` images nearest (cosine) to a (D,) text embedding,
        and their (k,) scores, best first."""
        if len(self) == 0:
            raise ValueError(f'the ReCo index {self.root} holds no images')
        query = torch.nn.functional.normalize(text_embedding.float().reshape(1, -1), dim=-1)
        extra = len(self.valid) - len(self)  # zero rows of unreadable files
        result = self.store.search(query.numpy(), k=min(k + extra, len(self.valid)),
                                   metric='ip')
        keep = [(float(s), int(i)) for s, i in zip(result.scores[0], result.ids[0])
                if i >= 0 and self.valid[i]][:k]
        paths = [osp.join(self.folder, self.files[i]) for _, i in keep]
        return paths, torch.tensor([s for s, _ in keep])
