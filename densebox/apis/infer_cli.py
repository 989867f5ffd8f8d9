"""``densebox infer CONFIG CKPT PATH_OR_FOLDER --out-dir out/`` (and ``tools/infer.py``).

Writes, for every image, the drawn prediction to ``OUT_DIR/vis/<name>`` and (segmentation)
the label map as a PNG to ``OUT_DIR/masks/<stem>.png`` (class index per pixel), and all
results to ``OUT_DIR/results.json``::

    {"config": ..., "checkpoint": ..., "classes": [...],
     "results": [{"path", "height", "width", "boxes", "scores", "labels", "label_names"}
                 | {"path", "height", "width", "class_pixels", "mask"}, ...]}
"""
import argparse
import json
import os
import os.path as osp
from typing import List, Optional

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def infer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='densebox infer',
                                description='Run a model on an image or a folder of images.')
    p.add_argument('config', help='config file or model-zoo name')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='checkpoint file (optional for zoo names)')
    p.add_argument('inputs', help='an image file or a folder (searched recursively)')
    p.add_argument('--out-dir', required=True, help='where drawings and results.json go')
    p.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detections below this score are not drawn nor written')
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cpu', 'cuda:0'")
    p.add_argument('--no-vis', action='store_true', help='write results.json only')
    p.add_argument('--backend', default='torch',
                   choices=('torch', 'onnxruntime', 'openvino', 'auto'),
                   help="what runs the network: the eager model (torch), its ONNX export in "
                        "onnxruntime or OpenVINO (CPU), or auto (the fastest installed, timed "
                        "on the first batch)")
    return p


def find_images(path: str) -> List[str]:
    """An image file, or the image files under a folder (recursively, sorted)."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path} is neither an image file nor a folder')
    found = []
    for root, _, files in os.walk(path):
        found += [osp.join(root, f) for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
    if not found:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {path}')
    return sorted(found)


def _out_name(path: str, root: str) -> str:
    """Output name that keeps sub-folders apart: 'a/b.jpg' under root -> 'a__b.jpg'."""
    rel = osp.relpath(path, root) if osp.isdir(root) else osp.basename(path)
    return rel.replace(os.sep, '__')


def infer_main(argv: Optional[List[str]] = None) -> dict:
    """Entry point of ``densebox infer``; returns the dict written to results.json."""
    # Two positionals are CONFIG INPUTS (a zoo name needs no checkpoint), three are
    # CONFIG CHECKPOINT INPUTS.
    parser = infer_parser()
    args = parser.parse_args(argv)
    import numpy as np
    from tqdm import tqdm

    from densebox.apis import DetResult, inference, init_model
    from densebox.visualization import save_image

    images = find_images(args.inputs)
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    model = init_model(args.config, args.checkpoint, device=args.device, backend=args.backend)
    os.makedirs(args.out_dir, exist_ok=True)
    records = []
    with tqdm(total=len(images), desc='infer', unit='img') as bar:
        for start in range(0, len(images), args.batch_size):
            chunk = images[start:start + args.batch_size]
            for path, res in zip(chunk, inference(chunk, model, batch_size=args.batch_size,
                                                  score_thr=args.score_thr,
                                                  keep_image=not args.no_vis)):
                name = _out_name(path, args.inputs)
                if isinstance(res, DetResult):
                    record = res.to_dict(score_thr=args.score_thr)
                else:
                    record = res.to_dict(with_map=False)
                    mask = osp.join(args.out_dir, 'masks', osp.splitext(name)[0] + '.png')
                    os.makedirs(osp.dirname(mask), exist_ok=True)
                    from PIL import Image
                    Image.fromarray(res.sem_seg.clip(0, 255).astype(np.uint8)).save(mask)
                    record['mask'] = osp.relpath(mask, args.out_dir)
                if not args.no_vis:
                    vis = osp.join(args.out_dir, 'vis', name)
                    save_image(vis, res.plot())
                    record['vis'] = osp.relpath(vis, args.out_dir)
                records.append(record)
            bar.update(len(chunk))
    out = dict(config=str(args.config), checkpoint=args.checkpoint,
               classes=list(model.dataset_meta['classes']), score_thr=args.score_thr,
               results=records)
    json_path = osp.join(args.out_dir, 'results.json')
    tmp = json_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, json_path)
    print(f'{len(records)} images -> {args.out_dir} (results.json'
          f'{", vis/" if not args.no_vis else ""})')
    return out
