"""ONNX export of densebox detectors and segmentors, post-processing included.

The exported graph takes images already resized to the export size, the way the config's
test pipeline would resize them, and does everything after that itself:

- input ``images``: (B, 3, H, W) float32, RGB, 0-255 (no mean / std: the graph normalises
  and pads as the model's data preprocessor does). B is dynamic with ``dynamic_batch``.
- detectors (:class:`~densebox.models.SingleStageDetector` with an SSD head):
  ``boxes`` (B, M, 4) float32 xyxy in pixels of the H x W input, ``scores`` (B, M)
  float32, ``labels`` (B, M) int64 and ``num_dets`` (B,) int64. M is the head's
  ``test_cfg.max_per_img``; row i of image b is a detection when ``i < num_dets[b]``
  (rows are sorted by score), the rest is padding (box 0, score 0, label -1). Decoding,
  per-class top-``nms_pre``, class-aware NMS (ONNX ``NonMaxSuppression``) and the final
  top-M are in the graph, with the semantics of ``SSDHead.predict_by_outputs``. To get
  boxes in the original image, divide x by ``W / w_orig`` and y by ``H / h_orig``.
- segmentors (:class:`~densebox.models.EncoderDecoder`): ``seg_map`` (B, H, W) int64, the
  arg-max class of every input pixel (or, with ``seg_output='logits'``, ``seg_logits``
  (B, C, H, W) float32).

:mod:`densebox.deploy.runtime` runs such files (onnxruntime or OpenVINO) behind the
interface of :func:`densebox.inference`, results in original-image pixels.

The model's class names and the input convention are stored in the ONNX file's metadata
(``densebox_classes`` as JSON, ``densebox_task``, ``densebox_input``).
"""
import json
import math
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchvision  # imported here: importing it while tracing fails
from torch import Tensor, nn

__all__ = ['export_onnx', 'DetectorForExport', 'SegmentorForExport', 'default_input_shape',
           'NonMaxSuppression']


class NonMaxSuppression(torch.autograd.Function):
    """Per-(batch, class) NMS that exports as ONNX ``NonMaxSuppression``.

    Args (forward):
        boxes: (N, M, 4) xyxy.
        scores: (N, C, M).
        iou_threshold: a box is suppressed by a kept box of higher score when IoU > this.
        score_threshold: boxes scoring <= this are dropped.

    Returns:
        (K, 3) int64 rows ``[n, c, m]`` of the kept boxes (ONNX's ``selected_indices``).
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float,
                score_threshold: float) -> Tensor:
        # Runs while tracing, where only the symbolic below is recorded; torchvision's NMS
        # has the same semantics as ONNX's (and densebox.ops').
        n, c, m = scores.shape
        flat_boxes = boxes[:, None].expand(n, c, m, 4).reshape(-1, 4)
        flat_scores = scores.reshape(-1)
        groups = torch.arange(n * c, device=boxes.device).repeat_interleave(m)
        valid = flat_scores > score_threshold
        index = torch.nonzero(valid).reshape(-1)
        keep = index[torchvision.ops.batched_nms(flat_boxes[index], flat_scores[index], groups[index],
                                 float(iou_threshold))]
        group, box = keep // m, keep % m
        return torch.stack([group // c, group % c, box], 1)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, score_threshold: float):
        max_boxes = g.op('Constant', value_t=torch.tensor([2 ** 31 - 1], dtype=torch.long))
        iou = g.op('Constant', value_t=torch.tensor([float(iou_threshold)], dtype=torch.float))
        score = g.op('Constant', value_t=torch.tensor([float(score_threshold)],
                                                      dtype=torch.float))
        return g.op('NonMaxSuppression', boxes, scores, max_boxes, iou, score)


def _padded_shape(hw: Tuple[int, int], preprocessor) -> Tuple[int, int]:
    """The (h, w) the data preprocessor pads an (h, w) image to."""
    div = int(getattr(preprocessor, 'pad_size_divisor', 1) or 1)
    h, w = (int(math.ceil(s / div) * div) for s in hw)
    size = getattr(preprocessor, 'size', None)
    if size is not None:
        h, w = max(h, int(size[0])), max(w, int(size[1]))
    return h, w


class _Normalise(nn.Module):
    """RGB 0-255 (B, 3, H, W) -> normalised and padded like the model's data preprocessor."""

    def __init__(self, preprocessor, input_hw: Tuple[int, int]):
        super().__init__()
        if getattr(preprocessor, '_enable_normalize', False):
            mean, std = preprocessor.mean.detach().clone(), preprocessor.std.detach().clone()
        else:
            mean, std = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.reshape(1, -1, 1, 1).float())
        self.register_buffer('std', std.reshape(1, -1, 1, 1).float())
        self.input_hw = tuple(input_hw)
        self.padded_hw = _padded_shape(input_hw, preprocessor)
        self.pad_value = float(getattr(preprocessor, 'pad_value', 0))

    def forward(self, images: Tensor) -> Tensor:
        x = (images.float() - self.mean) / self.std
        pad_h = self.padded_hw[0] - self.input_hw[0]
        pad_w = self.padded_hw[1] - self.input_hw[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x


class DetectorForExport(nn.Module):
    """An SSD-head detector with decoding and NMS in ``forward`` (see the module docstring).

    ``forward(images (B, 3, H, W) RGB 0-255) -> boxes (B, M, 4), scores (B, M),
    labels (B, M), num_dets (B,)``.
    """

    def __init__(self, model: nn.Module, input_hw: Tuple[int, int]):
        super().__init__()
        head = getattr(model, 'bbox_head', None)
        if head is None or not hasattr(head, 'anchor_generator'):
            raise TypeError(f'{type(model).__name__} has no anchor-based bbox_head; ONNX export '
                            'supports SSD-head detectors and EncoderDecoder segmentors')
        self.model = model
        self.normalise = _Normalise(model.data_preprocessor, input_hw)
        cfg = head.test_cfg
        self.score_thr, self.iou_thr = float(cfg['score_thr']), float(cfg['nms_iou_thr'])
        device = next(model.parameters()).device
        with torch.no_grad():
            dummy = torch.zeros(1, 3, *self.normalise.padded_hw, device=device)
            feats = model.extract_feat(dummy)
        anchors = head.anchors(feats).detach().clone()
        self.register_buffer('anchors', anchors)                               # (A, 4)
        self.nms_pre = min(int(cfg['nms_pre']), anchors.shape[0])
        self.max_per_img = min(int(cfg['max_per_img']), head.num_classes * self.nms_pre)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        head = self.model.bbox_head
        x = self.normalise(images)
        cls_logits, box_deltas = head(self.model.extract_feat(x))
        boxes = head.bbox_coder.decode(self.anchors[None], box_deltas,
                                       max_shape=self.normalise.padded_hw)      # (B, A, 4)
        scores = cls_logits.float().softmax(-1)[..., 1:].transpose(1, 2)        # (B, C, A)
        k = self.nms_pre
        top_scores, top_idx = scores.topk(k, dim=2)                              # (B, C, k)
        cand = torch.gather(boxes.unsqueeze(1).expand(-1, scores.shape[1], -1, -1), 2,
                            top_idx.unsqueeze(-1).expand(-1, -1, -1, 4))         # (B, C, k, 4)
        flat_cand = cand.reshape(-1, k, 4)                                       # (B*C, k, 4)
        flat_scores = top_scores.reshape(-1, 1, k)                               # (B*C, 1, k)
        selected = NonMaxSuppression.apply(flat_cand, flat_scores, self.iou_thr,
                                           self.score_thr)                       # (K, 3)
        position = selected[:, 0] * k + selected[:, 2]
        table = torch.full_like(top_scores, -1.0).reshape(-1)
        table = table.scatter(0, position, top_scores.reshape(-1)[position])
        table = table.reshape(top_scores.shape[0], -1)                           # (B, C*k)
        out_scores, out_idx = table.topk(self.max_per_img, dim=1)                # (B, M)
        out_boxes = torch.gather(cand.reshape(cand.shape[0], -1, 4), 1,
                                 out_idx.unsqueeze(-1).expand(-1, -1, 4))
        valid = out_scores > self.score_thr
        labels = torch.where(valid, out_idx // k, torch.full_like(out_idx, -1))
        out_scores = torch.where(valid, out_scores, torch.zeros_like(out_scores))
        out_boxes = out_boxes * valid.unsqueeze(-1).to(out_boxes.dtype)
        return out_boxes, out_scores, labels, valid.sum(1)


class SegmentorForExport(nn.Module):
    """``forward(images (B, 3, H, W) RGB 0-255) -> seg_map (B, H, W) int64``, or with
    ``output='logits'`` the class logits ``seg_logits`` (B, C, H, W) float32 (what
    :class:`densebox.deploy.OnnxSegmentor` resizes to each original image, as the model's
    own predict does)."""

    OUTPUTS = ('labels', 'logits')

    def __init__(self, model: nn.Module, input_hw: Tuple[int, int], output: str = 'labels'):
        super().__init__()
        if not hasattr(model, 'decode_head'):
            raise TypeError(f'{type(model).__name__} is not an EncoderDecoder segmentor')
        if output not in self.OUTPUTS:
            raise ValueError(f'SegmentorForExport: output must be one of {self.OUTPUTS}, '
                             f'got {output!r}')
        self.model = model
        self.normalise = _Normalise(model.data_preprocessor, input_hw)
        self.input_hw = tuple(input_hw)
        self.output = output
        if hasattr(model, 'cache_text_features'):
            # DenseCLIP: the class names' text features are computed now, outside the
            # trace, so the graph holds them as a constant instead of the text tower.
            model.cache_text_features()

    def forward(self, images: Tensor) -> Tensor:
        logits = self.model.inference(self.normalise(images))
        h, w = self.input_hw
        logits = logits[:, :, :h, :w]
        return logits.float() if self.output == 'logits' else logits.argmax(1)


def default_input_shape(cfg) -> Optional[Tuple[int, int]]:
    """(h, w) of a test pipeline that resizes to a fixed size (``keep_ratio=False``), else None."""
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        if not loader or loader.get('dataset') is None:
            continue
        ds = loader['dataset']
        while 'pipeline' not in ds and isinstance(ds.get('dataset'), dict):
            ds = ds['dataset']
        for step in ds.get('pipeline') or []:
            if step.get('type') == 'Resize' and not step.get('keep_ratio', False):
                scale = step['scale']
                scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
                return int(scale[1]), int(scale[0])  # Resize scale is (w, h)
    return None


def export_onnx(model: nn.Module, out_file: str, input_shape: Optional[Sequence[int]] = None,
                dynamic_batch: bool = True, opset_version: int = 17,
                verbose: bool = False, seg_output: str = 'labels') -> str:
    """Export a model from :func:`densebox.init_model` to ONNX.

    Args:
        model: a detector with an SSD head or an EncoderDecoder segmentor (eval mode).
        out_file: the .onnx path (folders are created).
        input_shape: (H, W) of the exported input; default: the fixed size of the config's
            test pipeline (``Resize(keep_ratio=False)``), required otherwise.
        dynamic_batch: the batch dimension of every input and output is symbolic (``'batch'``).
        opset_version: ONNX opset (>= 11 for NonMaxSuppression).
        seg_output: segmentors: ``'labels'`` (``seg_map``, the arg-max) or ``'logits'``
            (``seg_logits`` (B, C, H, W)).

    Returns:
        ``out_file``.
    """
    cfg = getattr(model, 'cfg', None)
    if input_shape is None:
        input_shape = default_input_shape(cfg) if cfg is not None else None
        if input_shape is None:
            raise ValueError('export_onnx: the test pipeline has no fixed-size Resize; pass '
                             'input_shape=(H, W)')
    h, w = (int(s) for s in input_shape)
    model = model.eval()
    if hasattr(model, 'decode_head'):
        wrapper, task = SegmentorForExport(model, (h, w), seg_output), 'seg'
        outputs = ['seg_map' if seg_output == 'labels' else 'seg_logits']
    else:
        wrapper, task = DetectorForExport(model, (h, w)), 'det'
        outputs = ['boxes', 'scores', 'labels', 'num_dets']
    wrapper.eval()  # the exporter restores the wrapper's mode, and with it the model's
    device = next(model.parameters()).device
    dummy = torch.randint(0, 256, (1, 3, h, w), device=device).float()
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: 'batch'} for name in ['images'] + outputs}
    parent = osp.dirname(osp.abspath(out_file))
    os.makedirs(parent, exist_ok=True)
    import warnings
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about Python ints from shapes
        torch.onnx.export(wrapper, (dummy,), out_file, dynamo=False, opset_version=opset_version,
                          input_names=['images'], output_names=outputs,
                          dynamic_axes=dynamic_axes, do_constant_folding=True, verbose=verbose)
    _add_metadata(out_file, model, task, (h, w))
    return out_file


def _add_metadata(path: str, model: nn.Module, task: str, hw: Tuple[int, int]) -> None:
    import onnx
    proto = onnx.load(path)
    meta = getattr(model, 'dataset_meta', None) or {}
    entries = {
        'densebox_task': task,
        'densebox_classes': json.dumps(list(meta.get('classes', ()))),
        'densebox_input': f'images: (B, 3, {hw[0]}, {hw[1]}) float32 RGB 0-255, resized to '
                          f'{hw[0]}x{hw[1]} like the test pipeline; no normalisation',
    }
    if task == 'seg':
        entries['densebox_align_corners'] = json.dumps(bool(getattr(model, 'align_corners',
                                                                    False)))
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, path)
