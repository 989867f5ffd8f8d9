"""Export a densebox model to ONNX, post-processing (NMS / arg-max) included.

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx [--shape H W]
        [--dynamic-batch] [--opset 17] [--check]

Input of the graph: ``images`` (B, 3, H, W) float32 RGB 0-255, already resized to H x W.
Detectors output ``boxes`` (B, M, 4), ``scores`` (B, M), ``labels`` (B, M) and ``num_dets``
(B,) (rows past num_dets are padding); segmentors ``seg_map`` (B, H, W). Details:
densebox/deploy/onnx.py. ``--check`` runs the file in onnxruntime on a random batch and
compares it with PyTorch.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Export a densebox model to ONNX.')
    p.add_argument('config', help='config file or model-zoo name')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='checkpoint (optional for zoo names; random weights if omitted for a '
                        'config)')
    p.add_argument('--out', required=True, help='output .onnx file')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                   help='input size (default: the fixed size of the test pipeline)')
    p.add_argument('--dynamic-batch', action='store_true',
                   help='make the batch dimension dynamic (default: fixed batch of 1)')
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--device', default='cpu')
    p.add_argument('--seg-logits', action='store_true',
                   help='segmentors: output the class logits (seg_logits (B, C, H, W)) instead '
                        'of the arg-max map; what densebox.deploy.OnnxSegmentor runs')
    p.add_argument('--check', action='store_true',
                   help='compare onnxruntime with PyTorch on a random batch after exporting')
    return p.parse_args(argv)


def check(model, path: str, batch: int = 2) -> None:
    """Run ``path`` in onnxruntime and the export wrapper in PyTorch on random images."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from densebox.deploy.onnx import DetectorForExport, SegmentorForExport
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    shape = sess.get_inputs()[0].shape
    h, w = int(shape[2]), int(shape[3])
    n = batch if not isinstance(shape[0], int) else shape[0]
    images = torch.randint(0, 256, (n, 3, h, w)).float()
    if hasattr(model, 'decode_head'):
        logits = 'seg_logits' in [o.name for o in sess.get_outputs()]
        wrapper = SegmentorForExport(model.cpu(), (h, w), 'logits' if logits else 'labels')
    else:
        wrapper = DetectorForExport(model.cpu(), (h, w))
    with torch.no_grad():
        ref = wrapper(images)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = sess.run(None, {'images': images.numpy()})
    for name, a, b in zip([o.name for o in sess.get_outputs()], got, ref):
        b = b.numpy()
        if a.dtype.kind == 'f':
            diff = float(np.abs(a - b).max()) if a.size else 0.0
            print(f'{name}: shape {a.shape}, max |onnx - torch| = {diff:.2e}')
        else:
            print(f'{name}: shape {a.shape}, equal: {bool(np.array_equal(a, b))}')


def main(argv=None):
    args = parse_args(argv)
    from densebox.apis import init_model
    from densebox.deploy import export_onnx
    model = init_model(args.config, args.checkpoint, device=args.device)
    path = export_onnx(model, args.out, input_shape=args.shape,
                       dynamic_batch=args.dynamic_batch, opset_version=args.opset,
                       seg_output='logits' if args.seg_logits else 'labels')
    print(f'wrote {path}')
    if args.check:
        check(model, path, batch=2 if args.dynamic_batch else 1)
    return path


if __name__ == '__main__':
    main()
