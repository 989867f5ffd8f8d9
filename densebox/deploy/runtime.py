"""Run a densebox model's ONNX export in onnxruntime or OpenVINO, behind the interface that
:func:`densebox.inference` uses, with results in ORIGINAL-image pixels.

    import densebox
    model = densebox.init_model('configs/ssd300_coco.py', 'ssd300_coco.pth',
                                backend='openvino')         # or 'onnxruntime', 'auto'
    res = densebox.inference('street.jpg', model)           # the same DetResult as eager

    from densebox.deploy import OnnxDetector
    det = OnnxDetector('ssd300.onnx', 'configs/ssd300_coco.py', runtime='onnxruntime')
    res = densebox.inference('street.jpg', det)              # a file from tools/export_onnx.py

What runs where: the config's test pipeline prepares each image exactly as for the eager
model (:func:`densebox.inference` is the same code); the graph normalises, pads and runs
the network, and for detectors decodes and suppresses (:mod:`densebox.deploy.onnx`); this
module maps the graph's outputs back to the original image: boxes divided by the
pipeline's ``scale_factor`` (the graph's boxes are in resized-input pixels), logits resized
(bilinear, the model's ``align_corners``) to the original size before the arg-max, as
:class:`~densebox.models.EncoderDecoder` does. So every backend returns the same
:class:`~densebox.apis.DetResult` / :class:`~densebox.apis.SegResult`, equal to the eager
path up to the runtimes' float rounding (tests/test_deploy_runtime.py).

A graph has a fixed input size. Runners made from a model (:meth:`OnnxModel.from_model`,
what ``init_model(backend=...)`` builds) export and compile one graph per input size they
meet (SSD: always 300 x 300; keep-ratio segmentation pipelines: one per image size), the
first time they meet it; runners made from a file accept that file's size only.

OpenVINO runs in float32 (``INFERENCE_PRECISION_HINT f32``): on CPUs with bfloat16 units
its default would be bfloat16, which changes the results beyond rounding.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

RUNTIMES = ('onnxruntime', 'openvino')
BACKENDS = ('torch',) + RUNTIMES + ('auto',)
_INSTALL = dict(onnxruntime='pip install onnxruntime (or densebox[onnx])',
                openvino='pip install openvino (or densebox[openvino])')


def runtime_available(runtime: str) -> bool:
    """Whether the python package of ``runtime`` can be imported."""
    import importlib.util
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {RUNTIMES}, got {runtime!r}')
    return importlib.util.find_spec(runtime) is not None


def available_backends() -> List[str]:
    """``'torch'`` and the installed ONNX runtimes, in that order."""
    return ['torch'] + [r for r in RUNTIMES if runtime_available(r)]


class CompiledGraph:
    """One ONNX file loaded by a runtime: ``run(images)`` -> ``{output name: array}``.

    Args:
        path: the .onnx file.
        runtime: ``'onnxruntime'`` (CPUExecutionProvider) or ``'openvino'`` (CPU, float32).
        threads: intra-op threads (default: ``torch.get_num_threads()``, as eager).
    """

    def __init__(self, path: str, runtime: str = 'onnxruntime', threads: Optional[int] = None):
        if runtime not in RUNTIMES:
            raise ValueError(f'runtime must be one of {RUNTIMES}, got {runtime!r}')
        if not runtime_available(runtime):
            raise ImportError(f"runtime {runtime!r} is not installed: {_INSTALL[runtime]}")
        self.path, self.runtime = path, runtime
        threads = int(threads or torch.get_num_threads())
        if runtime == 'onnxruntime':
            import onnxruntime as ort
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(path, options,
                                                 providers=['CPUExecutionProvider'])
            inp = self._session.get_inputs()[0]
            self.input_name, self.input_shape = inp.name, list(inp.shape)
            self.output_names = [o.name for o in self._session.get_outputs()]
        else:
            import openvino as ov
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(path), 'CPU', {
                'INFERENCE_PRECISION_HINT': 'f32', 'INFERENCE_NUM_THREADS': str(threads),
                'PERFORMANCE_HINT': 'LATENCY'})
            inp = self._compiled.inputs[0]
            self.input_name = inp.get_any_name()
            self.input_shape = [d.get_length() if d.is_static else 'batch'
                                for d in inp.get_partial_shape()]
            # an output may carry several tensor names; keep the graph's own, in its order
            import onnx
            names = [o.name for o in onnx.load(path, load_external_data=False).graph.output]
            self.output_names = [next((n for n in names if n in o.get_names()), o.get_any_name())
                                 for o in self._compiled.outputs]

    @property
    def input_hw(self) -> Tuple[int, int]:
        return int(self.input_shape[2]), int(self.input_shape[3])

    def run(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        """images: (B, 3, H, W) float32 RGB 0-255 at :attr:`input_hw`."""
        if self.runtime == 'onnxruntime':
            outs = self._session.run(None, {self.input_name: images})
        else:
            result = self._compiled({self.input_name: images})
            outs = [result[o] for o in self._compiled.outputs]
        return dict(zip(self.output_names, outs))


def _read_metadata(path: str) -> Dict[str, str]:
    import onnx
    proto = onnx.load(path, load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


class OnnxModel:
    """Shared part of :class:`OnnxDetector` and :class:`OnnxSegmentor`.

    Quacks like the eager model where :func:`densebox.inference` needs it: ``cfg``,
    ``dataset_meta`` and ``test_step(data) -> data samples with predictions``; calling the
    runner runs :func:`densebox.inference` with it.

    Args:
        onnx_file: a graph from :func:`densebox.deploy.export_onnx` / tools/export_onnx.py.
        config: the model's config (path, Config or dict): its test pipeline prepares the
            images. A zoo name works too.
        runtime: ``'onnxruntime'`` or ``'openvino'``.
        threads: runtime threads (default: torch's).
        dataset_meta: ``{'classes', 'palette'}``; default: the file's class names and the
            config's palette.
    """

    task = ''

    def __init__(self, onnx_file: Optional[str] = None, config=None,
                 runtime: str = 'onnxruntime', threads: Optional[int] = None,
                 dataset_meta: Optional[dict] = None):
        self.runtime = runtime
        self.threads = threads
        self._graphs: Dict[Tuple[int, int], CompiledGraph] = {}
        self._export: Optional[Callable[[Tuple[int, int]], str]] = None
        self.setup_seconds = 0.0  # export + compile time spent so far (one-off costs)
        if onnx_file is None:
            return  # from_model fills in the rest
        if not os.path.isfile(onnx_file):
            raise FileNotFoundError(f'ONNX file {onnx_file} does not exist')
        if config is None:
            raise ValueError(f'{type(self).__name__}({onnx_file!r}): pass the model config '
                             '(its test pipeline prepares the images)')
        meta = _read_metadata(onnx_file)
        if meta.get('densebox_task', self.task) != self.task:
            raise ValueError(f'{onnx_file} holds a densebox_task={meta["densebox_task"]!r} '
                             f'graph, not one for {type(self).__name__}')
        from densebox.config import dataset_meta_from_config, load_config
        from densebox.setup_env import register_all_modules
        register_all_modules()
        self.cfg = load_config(config) if not _is_zoo_name(config) else _zoo_config(config)
        if dataset_meta is None:
            dataset_meta = dataset_meta_from_config(self.cfg)
            classes = json.loads(meta.get('densebox_classes', '[]'))
            if classes:
                dataset_meta = dict(dataset_meta, classes=tuple(classes))
        self.dataset_meta = dataset_meta
        self._file_meta = meta
        start = time.perf_counter()
        graph = CompiledGraph(onnx_file, runtime, threads)
        self.setup_seconds += time.perf_counter() - start
        self._graphs[graph.input_hw] = graph
        self._check_outputs(graph)

    @classmethod
    def from_model(cls, model: torch.nn.Module, runtime: str = 'onnxruntime',
                   threads: Optional[int] = None, onnx_dir: Optional[str] = None):
        """A runner for an eager model (from :func:`densebox.init_model`, on the CPU): it
        exports the model to ``onnx_dir`` (default: a temporary folder removed at exit)
        when it meets a new input size."""
        runner = cls(runtime=runtime, threads=threads)
        runner.cfg = model.cfg
        runner.dataset_meta = getattr(model, 'dataset_meta', None) or {}
        runner._align_corners = bool(getattr(model, 'align_corners', False))
        folder = onnx_dir or _temporary_folder()

        def export(hw: Tuple[int, int]) -> str:
            from .onnx import export_onnx
            path = os.path.join(folder, f'{runner.task}_{hw[0]}x{hw[1]}.onnx')
            if not os.path.isfile(path):
                export_onnx(model, path, input_shape=hw, dynamic_batch=True,
                            **runner._export_options())
            return path
        runner._export = export
        return runner

    # ---------------------------------------------------------------- the model interface
    def test_step(self, data: dict) -> list:
        """``{'inputs': [(3, H, W) uint8], 'data_samples': [...]}`` (what the test pipeline
        packs) -> the samples with predictions in original-image pixels. Images of one size
        go through the graph together."""
        inputs, samples = data['inputs'], data['data_samples']
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, image in enumerate(inputs):
            groups.setdefault(tuple(int(s) for s in image.shape[-2:]), []).append(i)
        for hw, members in groups.items():
            graph = self._graph_for(hw)
            batch = np.stack([np.asarray(inputs[i].cpu().numpy(), np.float32) for i in members])
            outputs = graph.run(batch)
            for j, i in enumerate(members):
                self._set_predictions(samples[i], outputs, j)
        return samples

    def eval(self):  # what callers of an eager model may do
        return self

    def __repr__(self) -> str:
        sizes = ', '.join(f'{h}x{w}' for h, w in self._graphs) or 'none yet'
        return f'{type(self).__name__}(runtime={self.runtime!r}, graphs for {sizes})'

    # ---------------------------------------------------------------- internals
    def _graph_for(self, hw: Tuple[int, int]) -> CompiledGraph:
        graph = self._graphs.get(hw)
        if graph is not None:
            return graph
        if self._export is None:
            sizes = ', '.join(f'{h}x{w}' for h, w in self._graphs)
            raise ValueError(f'{type(self).__name__}: the test pipeline made a {hw[0]}x{hw[1]} '
                             f'input but the ONNX file takes {sizes}; export the model at this '
                             'size (tools/export_onnx.py --shape H W) or build the runner '
                             'from the model (OnnxModel.from_model)')
        start = time.perf_counter()
        graph = CompiledGraph(self._export(hw), self.runtime, self.threads)
        self.setup_seconds += time.perf_counter() - start
        self._check_outputs(graph)
        self._graphs[hw] = graph
        return graph

    def _export_options(self) -> dict:
        return {}

    def _check_outputs(self, graph: CompiledGraph) -> None:
        raise NotImplementedError

    def _set_predictions(self, sample, outputs: Dict[str, np.ndarray], j: int) -> None:
        raise NotImplementedError


class OnnxDetector(OnnxModel):
    """An exported SSD-head detector: the graph's boxes (resized-input pixels) divided by
    each image's ``scale_factor``, i.e. boxes in original-image pixels as the eager head's
    ``rescale`` gives them."""

    task = 'det'

    def _check_outputs(self, graph: CompiledGraph) -> None:
        missing = {'boxes', 'scores', 'labels', 'num_dets'} - set(graph.output_names)
        if missing:
            raise ValueError(f'{graph.path}: not a densebox detector graph (no outputs '
                             f'{sorted(missing)})')

    def _set_predictions(self, sample, outputs, j) -> None:
        from mmengine.structures import InstanceData
        n = int(outputs['num_dets'][j])
        sx, sy = (float(v) for v in sample.metainfo.get('scale_factor', (1.0, 1.0))[:2])
        factors = np.array([sx, sy, sx, sy], np.float32)
        boxes = outputs['boxes'][j, :n].astype(np.float32) / factors
        sample.pred_instances = InstanceData(
            bboxes=torch.from_numpy(np.ascontiguousarray(boxes)),
            scores=torch.from_numpy(outputs['scores'][j, :n].astype(np.float32)),
            labels=torch.from_numpy(outputs['labels'][j, :n].astype(np.int64)))


class OnnxSegmentor(OnnxModel):
    """An exported EncoderDecoder with ``seg_output='logits'``: the logits of each image
    are cut to its ``img_shape``, resized (bilinear) to ``ori_shape`` and arg-maxed, as
    :meth:`EncoderDecoder.postprocess_result` does (test-time flips are not supported)."""

    task = 'seg'

    def _export_options(self) -> dict:
        return dict(seg_output='logits')

    @property
    def align_corners(self) -> bool:
        if hasattr(self, '_align_corners'):
            return self._align_corners
        return bool(json.loads(self._file_meta.get('densebox_align_corners', 'false')))

    def _check_outputs(self, graph: CompiledGraph) -> None:
        if 'seg_logits' not in graph.output_names:
            raise ValueError(f'{graph.path}: OnnxSegmentor needs a graph that outputs '
                             "seg_logits (export_onnx(..., seg_output='logits'), "
                             f'tools/export_onnx.py --seg-logits); it has {graph.output_names}')

    def _set_predictions(self, sample, outputs, j) -> None:
        from mmengine.structures import PixelData

        from densebox.models.utils import resize
        meta = sample.metainfo
        if meta.get('flip', False):
            raise ValueError('OnnxSegmentor: test-time flips are not supported')
        logits = torch.from_numpy(outputs['seg_logits'][j:j + 1])
        h, w = meta.get('img_shape', logits.shape[-2:])[:2]
        logits = logits[:, :, :h, :w]
        logits = resize(logits, meta.get('ori_shape', (h, w))[:2], 'bilinear',
                        self.align_corners)[0]
        sample.seg_logits = PixelData(data=logits)
        sample.pred_sem_seg = PixelData(data=logits.argmax(0, keepdim=True))


def runner_class(model) -> type:
    """:class:`OnnxSegmentor` for EncoderDecoder models, :class:`OnnxDetector` otherwise."""
    return OnnxSegmentor if hasattr(model, 'decode_head') else OnnxDetector


class AutoBackend:
    """``backend='auto'``: on the first batch, time the eager model and every installed
    runtime on it and keep the fastest.

    The first ``test_step`` pays a one-off cost: the export and compilation of the graph
    and ``warmup`` + ``repeats`` runs of every candidate (``setup_seconds`` records it;
    for SSD300 on a 2-core CPU that is tens of seconds). ``chosen`` names the pick and
    ``timings`` holds each candidate's median seconds per batch.
    """

    def __init__(self, model: torch.nn.Module, candidates: Optional[Sequence[str]] = None,
                 repeats: int = 3, warmup: int = 1, onnx_dir: Optional[str] = None,
                 log: Callable[[str], None] = None):
        self.model = model
        self.cfg = model.cfg
        self.dataset_meta = getattr(model, 'dataset_meta', None) or {}
        self.candidates = list(candidates or available_backends())
        self.repeats, self.warmup = repeats, warmup
        self.onnx_dir = onnx_dir
        self.chosen: Optional[str] = None
        self.timings: Dict[str, float] = {}
        self.setup_seconds = 0.0
        self._runner: Any = None
        self._log = log or _log

    def test_step(self, data: dict) -> list:
        if self._runner is None:
            return self._choose(data)
        return self._runner.test_step(data)

    def eval(self):
        return self

    def __repr__(self) -> str:
        return f'AutoBackend(chosen={self.chosen!r}, timings={self.timings})'

    def _choose(self, data: dict) -> list:
        import copy
        import statistics
        start = time.perf_counter()
        outputs: Dict[str, list] = {}
        runners: Dict[str, Any] = {}
        for name in self.candidates:
            try:
                runner = (self.model if name == 'torch' else runner_class(self.model)
                          .from_model(self.model, name, onnx_dir=self.onnx_dir))
                seconds = []
                with torch.no_grad():
                    for k in range(self.warmup + self.repeats):
                        t0 = time.perf_counter()
                        outputs[name] = runner.test_step(copy.deepcopy(data))
                        if k >= self.warmup:
                            seconds.append(time.perf_counter() - t0)
            except Exception as err:  # a runtime that cannot run this graph
                if name == 'torch':
                    raise
                warnings.warn(f"backend 'auto': {name} failed ({type(err).__name__}: {err}); "
                              'not used')
                continue
            runners[name] = runner
            self.timings[name] = statistics.median(seconds)
        self.chosen = min(self.timings, key=self.timings.get)
        self._runner = runners[self.chosen]
        self.setup_seconds = time.perf_counter() - start
        parts = ', '.join(f'{n} {s:.3f} s' for n, s in self.timings.items())
        self._log(f"densebox: backend 'auto' chose {self.chosen} ({parts} per batch of "
                  f"{len(data['inputs'])}); choosing took {self.setup_seconds:.1f} s, once")
        return outputs[self.chosen]


def wrap_backend(model: torch.nn.Module, backend: str, device: torch.device):
    """What :func:`densebox.init_model` returns for ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'torch':
        return model
    if device.type != 'cpu':
        if backend == 'auto':
            return model  # the runtimes here are CPU ones: on a GPU, eager wins
        raise ValueError(f"backend={backend!r} runs on the CPU; use device='cpu' (got "
                         f"{device}) or backend='torch'")
    if backend == 'auto':
        return AutoBackend(model)
    if not runtime_available(backend):
        raise ImportError(f'backend={backend!r} is not installed: {_INSTALL[backend]}')
    return runner_class(model).from_model(model, backend)


def _log(line: str) -> None:
    from mmengine.logging import print_log
    print_log(line, logger='current')


def _temporary_folder() -> str:
    folder = tempfile.mkdtemp(prefix='densebox_onnx_')
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _is_zoo_name(config) -> bool:
    from densebox.config import find_config_file
    return isinstance(config, str) and find_config_file(config) is None \
        and not config.endswith('.py')


def _zoo_config(name: str):
    from densebox.config import load_config
    return load_config(name)  # a zoo name: its config with the entry's overrides


__all__ = ['RUNTIMES', 'BACKENDS', 'CompiledGraph', 'OnnxModel', 'OnnxDetector',
           'OnnxSegmentor', 'AutoBackend', 'available_backends', 'runtime_available',
           'runner_class', 'wrap_backend']
