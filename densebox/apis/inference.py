"""``densebox.inference``: images in, :class:`DetResult` / :class:`SegResult` out.

The path is the one the test loop takes: the model config's own test pipeline
(``cfg.test_dataloader.dataset.pipeline``) without its annotation loading, then the
model's ``data_preprocessor`` and one ``predict`` call per batch (``model.test_step``).
Only the first step differs: images are decoded (files) or taken as they are (arrays,
PIL images) here, and handed to the rest of the pipeline in memory.
"""
import os
import threading
from typing import Any, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .results import DetResult, SegResult

__all__ = ['inference', 'set_default_model', 'get_default_model', 'build_test_pipeline',
           'DEFAULT_MODEL_ENV']

DEFAULT_MODEL_ENV = 'DENSEBOX_MODEL'
_LOADERS = ('LoadImageFromFile',)
_ANNOTATION_LOADERS = ('LoadAnnotations',)

ImageLike = Union[str, os.PathLike, np.ndarray, Any]  # Any: PIL.Image.Image

# ----------------------------------------------------------------------- default model
_default = {'model': None, 'env_value': None}
_default_lock = threading.Lock()


def set_default_model(model_or_config: Union[nn.Module, str, os.PathLike, None],
                      checkpoint: Optional[str] = None, device: str = 'auto') -> Optional[nn.Module]:
    """Set the model that ``densebox.inference(img)`` uses when given none.

    Args:
        model_or_config: a model from :func:`init_model`, a config path or a zoo name
            (built now with ``checkpoint`` and ``device``), or None to clear.
    Returns:
        The default model (None when cleared).
    """
    if model_or_config is None:
        _default.update(model=None, env_value=None)
        return None
    if isinstance(model_or_config, nn.Module) or hasattr(model_or_config, 'test_step'):
        model = model_or_config  # an eager model or a densebox.deploy runner
    else:
        from .model import init_model
        model = init_model(model_or_config, checkpoint, device=device)
    _default.update(model=model, env_value=None)
    return model


def _parse_env_model(value: str):
    """``CONFIG``, ``CONFIG:CHECKPOINT`` or a zoo name -> (config, checkpoint or None)."""
    from densebox.config import find_config_file
    if find_config_file(value) is not None or ':' not in value:
        return value, None
    config, checkpoint = value.rsplit(':', 1)
    return config, (checkpoint or None)


def get_default_model() -> nn.Module:
    """The model set by :func:`set_default_model`, else the one ``$DENSEBOX_MODEL`` names
    (built once and kept), else a ``RuntimeError`` saying how to set one."""
    if _default['model'] is not None and _default['env_value'] is None:
        return _default['model']
    value = os.environ.get(DEFAULT_MODEL_ENV, '').strip()
    if value:
        with _default_lock:  # threads calling inference() at once build it once
            if _default['model'] is not None and _default['env_value'] == value:
                return _default['model']
            from .model import init_model
            config, checkpoint = _parse_env_model(value)
            model = init_model(config, checkpoint)
            _default.update(model=model, env_value=value)
            return model
    raise RuntimeError(
        'densebox.inference() was called without a model and no default model is set. '
        'Pass one (model = densebox.init_model(CONFIG, CHECKPOINT); '
        'densebox.inference(img, model)), call densebox.set_default_model(CONFIG, CHECKPOINT) '
        f'once, or set the environment variable {DEFAULT_MODEL_ENV}="CONFIG[:CHECKPOINT]" '
        '(or a model-zoo name, see densebox.zoo.list_models()).')


# --------------------------------------------------------------------------- pipeline
def build_test_pipeline(cfg) -> tuple:
    """The config's test pipeline minus its image loader and annotation loaders.

    Returns:
        (loader_cfg, transforms): the removed ``LoadImageFromFile`` config (its
        ``backend_args`` are used to read files) and a callable applying the rest.
    """
    from mmengine.dataset import Compose

    from densebox.registry import TRANSFORMS
    pipeline = None
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        if loader and loader.get('dataset') is not None:
            ds = loader['dataset']
            while 'pipeline' not in ds and isinstance(ds.get('dataset'), dict):
                ds = ds['dataset']
            pipeline = ds.get('pipeline')
            if pipeline is not None:
                break
    if pipeline is None:
        pipeline = cfg.get('test_pipeline')
    if not pipeline:
        raise KeyError('the model config has no test pipeline (test_dataloader.dataset.pipeline '
                       'or test_pipeline); inference needs it to prepare images')
    steps = [dict(t) for t in pipeline]
    first = steps[0].get('type')
    if first not in _LOADERS:
        raise ValueError(f'the test pipeline must start with LoadImageFromFile to be used for '
                         f'inference, it starts with {first!r}')
    loader_cfg = steps.pop(0)
    steps = [t for t in steps if t.get('type') not in _ANNOTATION_LOADERS]
    transforms = Compose([TRANSFORMS.build(t) for t in steps])
    return loader_cfg, transforms


def _array_to_rgb(arr: np.ndarray, color_order: str, where: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise TypeError(f'{where}: images must be uint8 arrays (0-255), got dtype {arr.dtype}')
    if arr.ndim in (2, 3) and min(arr.shape[:2]) == 0:
        raise ValueError(f'{where}: the image array is empty (shape {arr.shape})')
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f'{where}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, '
                         f'got shape {arr.shape}')
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if color_order == 'bgr':
        arr = arr[:, :, ::-1]
    return np.array(arr, order='C', copy=True)  # the result keeps its own image


def _load_input(item: ImageLike, color_order: str, where: str, backend_args) -> tuple:
    """-> (RGB uint8 (H, W, 3) array, path or None)."""
    from densebox.datasets.transforms.loading import decode_rgb, read_bytes
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        return decode_rgb(read_bytes(path, backend_args), path), path
    if isinstance(item, np.ndarray):
        return _array_to_rgb(item, color_order, where), None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(item, Image.Image):
        return (_array_to_rgb(np.asarray(item.convert('RGB')), 'rgb', where),
                getattr(item, 'filename', None) or None)
    raise TypeError(f'{where}: expected an image path, a uint8 numpy array or a PIL image, got '
                    f'{type(item).__name__}')


def _split_inputs(inputs) -> tuple:
    """-> (list of items, whether a single item was given)."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs), False
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        return list(inputs), False  # (N, H, W, C): a batch of frames
    return [inputs], True


def _collate(packed: List[dict]) -> dict:
    return dict(inputs=[p['inputs'] for p in packed],
                data_samples=[p['data_samples'] for p in packed])


def _to_result(sample, image, path, meta: dict, score_thr: float, keep_image: bool,
               frame=None):
    classes = meta.get('classes') or ()
    palette = meta.get('palette')
    shape = image.shape[:2]
    if 'pred_instances' in sample:
        pred = sample.pred_instances
        return DetResult(pred.bboxes.float().cpu().numpy(), pred.scores.float().cpu().numpy(),
                         pred.labels.cpu().numpy(), classes, image if keep_image else None,
                         path, shape, palette, score_thr, frame=frame)
    if 'pred_sem_seg' in sample:
        seg = sample.pred_sem_seg.data[0].cpu().numpy()
        return SegResult(seg, classes, image if keep_image else None, path, palette,
                         frame=frame)
    raise RuntimeError('the model returned neither pred_instances nor pred_sem_seg')


def _pipeline_of(model: nn.Module):
    cached = getattr(model, '_densebox_inference_pipeline', None)
    if cached is not None and cached[0] is model.cfg:
        return cached[1], cached[2]
    loader_cfg, transforms = build_test_pipeline(model.cfg)
    model._densebox_inference_pipeline = (model.cfg, loader_cfg, transforms)
    return loader_cfg, transforms


def _with_classes(model: nn.Module, classes: Sequence[str], run):
    """Run ``run()`` with an open-vocabulary model switched to ``classes``."""
    if not hasattr(model, 'set_classes'):
        raise TypeError(f'classes=... needs an open-vocabulary model (e.g. ReCo); '
                        f'{type(model).__name__} predicts the fixed classes it was trained on')
    classes = [str(c) for c in classes]
    previous = model.set_classes(classes)
    meta = getattr(model, 'dataset_meta', None)
    try:
        from densebox.visualization import get_palette
        model.dataset_meta = dict(meta or {}, classes=tuple(classes),
                                  palette=[tuple(int(v) for v in c)
                                           for c in get_palette(len(classes))])
        return run()
    finally:
        model.dataset_meta = meta
        model.set_classes(previous)


def inference(inputs: Union[ImageLike, Sequence[ImageLike]], model: Optional[nn.Module] = None,
              batch_size: int = 1, color_order: str = 'rgb', score_thr: float = 0.3,
              keep_image: bool = True, classes: Optional[Sequence[str]] = None
              ) -> Union[DetResult, SegResult, list]:
    """Run a detector or segmentor on images.

    Args:
        inputs: one image or a list of them. An image is a file path, a PIL image or a
            uint8 numpy array (H, W, 3) / (H, W) / (H, W, 4) (alpha dropped); a 4-D array
            (N, H, W, 3) is N images. A stream (a video file such as ``'clip.mp4'``, a
            camera index such as ``0``, an ``rtsp://`` URL, or a generator / iterator of
            images) gives a generator of results, one per frame, computed as the frames
            arrive (:mod:`densebox.apis.streams`).
        model: from :func:`init_model`; None uses the default model
            (:func:`set_default_model` or ``$DENSEBOX_MODEL``).
        batch_size: images per forward pass.
        color_order: channel order of numpy array inputs: ``'rgb'`` (PIL, imageio,
            matplotlib) or ``'bgr'`` (OpenCV's ``cv2.imread`` / ``VideoCapture``). Files and
            PIL images are always decoded to RGB.
        score_thr: the display threshold of the returned :class:`DetResult` (what its
            ``to_dict``, ``to_json``, ``plot`` and ``save`` keep); every detection the
            model's ``test_cfg`` keeps is still held in its arrays.
        keep_image: keep the RGB input image in the result (for ``plot`` / ``save``).
        classes: open-vocabulary models only (ReCo): the class names to segment for this
            call, any list; the model's own classes are restored afterwards.

    Returns:
        One :class:`DetResult` / :class:`SegResult` for one image, a list for a list, a
        generator for a stream (results carry the frame index in ``frame``). Boxes and maps
        are in pixels of the input image.
    """
    if color_order not in ('rgb', 'bgr'):
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    if int(batch_size) < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if model is None:
        model = get_default_model()
    if not hasattr(model, 'cfg'):
        raise AttributeError('the model has no .cfg: build it with densebox.init_model(), which '
                             'attaches the config whose test pipeline inference uses')
    if classes is not None:
        return _with_classes(model, classes, lambda: inference(
            inputs, model, batch_size, color_order, score_thr, keep_image))
    loader_cfg, transforms = _pipeline_of(model)
    run = dict(model=model, transforms=transforms, backend_args=loader_cfg.get('backend_args'),
               meta=getattr(model, 'dataset_meta', None) or {}, score_thr=score_thr,
               keep_image=keep_image)
    from .streams import is_stream, is_video_path, video_frames
    if is_stream(inputs):
        if is_video_path(inputs) or isinstance(inputs, (int, np.integer)):
            source = None if isinstance(inputs, (int, np.integer)) else os.fspath(inputs)
            return _stream(video_frames(inputs), int(batch_size), 'rgb', run, source)
        return _stream(iter(inputs), int(batch_size), color_order, run, None)
    items, single = _split_inputs(inputs)
    results = []
    for start in range(0, len(items), int(batch_size)):
        chunk = items[start:start + int(batch_size)]
        results += _predict(chunk, range(start, start + len(chunk)), color_order, run)
    return results[0] if single else results


def _predict(chunk: list, indices, color_order: str, run: dict, source=None,
             frames=None) -> list:
    """Results of one batch of inputs (``indices`` name them in error messages)."""
    images, paths, packed = [], [], []
    for item, index in zip(chunk, indices):
        image, path = _load_input(item, color_order, f'input {index}', run['backend_args'])
        h, w = image.shape[:2]
        data = run['transforms'](dict(img=image, img_path=path or source, img_id=index,
                                      img_shape=(h, w), ori_shape=(h, w)))
        if data is None:
            raise RuntimeError(f'the test pipeline dropped input {index}')
        images.append(image)
        paths.append(path or source)
        packed.append(data)
    with torch.no_grad():
        outputs = run['model'].test_step(_collate(packed))
    frames = frames if frames is not None else [None] * len(chunk)
    return [_to_result(sample, image, path, run['meta'], run['score_thr'], run['keep_image'],
                       frame)
            for sample, image, path, frame in zip(outputs, images, paths, frames)]


def _stream(frames: Iterator, batch_size: int, color_order: str, run: dict,
            source: Optional[str]) -> Iterator:
    """Results of a stream, one per frame, ``batch_size`` frames per forward pass; each
    result's ``frame`` is its index in the stream (and ``path`` the video, if any)."""
    chunk, indices = [], []
    for index, frame in enumerate(frames):
        chunk.append(frame)
        indices.append(index)
        if len(chunk) == batch_size:
            yield from _predict(chunk, indices, color_order, run, source, frames=indices)
            chunk, indices = [], []
    if chunk:
        yield from _predict(chunk, indices, color_order, run, source, frames=indices)
