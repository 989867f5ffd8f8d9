"""``densebox infer CONFIG [CKPT] INPUT --out-dir out/`` (and ``tools/infer.py``).

INPUT is an image, a folder of images (searched recursively), a video file (``.mp4``,
``.avi``, ...) or a camera index (``0``).

Images: the drawn prediction goes to ``OUT_DIR/vis/<name>`` and (segmentation) the label
map as a PNG to ``OUT_DIR/masks/<stem>.png`` (class index per pixel). A video or camera:
the annotated video goes to ``OUT_DIR/vis/<stem>.mp4`` (``--out-video`` names another file)
with frames streamed through the model, and (segmentation) one mask PNG per frame with
``--save-masks``. All results go to ``OUT_DIR/results.json``::

    {"config": ..., "checkpoint": ..., "classes": [...], "score_thr": ...,
     "results": [{"path", ["frame"], "height", "width", "boxes", "scores", "labels",
                  "label_names"} | {"path", ["frame"], "height", "width", "class_pixels",
                  "mask"}, ...]}

Detections are written and drawn down to ``--score-thr`` (the one threshold of the
results, see :class:`densebox.DetResult`).
"""
import argparse
import json
import os
import os.path as osp
from typing import List, Optional

from .streams import VIDEO_SUFFIXES

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def infer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='densebox infer',
                                description='Run a model on an image, a folder of images, a '
                                            'video file or a camera.')
    p.add_argument('config', help='config file, recipe name or model-zoo name')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='checkpoint file (optional for zoo names)')
    p.add_argument('inputs', help='an image, a folder (searched recursively), a video file or '
                                  'a camera index (0)')
    p.add_argument('--out-dir', required=True, help='where drawings and results.json go')
    p.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detections below this score are not drawn nor written')
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cpu', 'cuda:0'")
    p.add_argument('--no-vis', action='store_true', help='write results.json only')
    p.add_argument('--max-frames', type=int, default=None,
                   help='video / camera: stop after this many frames (a camera runs until '
                        'Ctrl-C otherwise)')
    p.add_argument('--out-video', default=None,
                   help='video / camera: the annotated video (default OUT_DIR/vis/<name>.mp4; '
                        '.avi writes MJPG)')
    p.add_argument('--save-masks', action='store_true',
                   help='video / camera, segmentation: also write one mask PNG per frame')
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
        raise FileNotFoundError(f'{path} is neither an image file, a folder, a video file '
                                f'({", ".join(VIDEO_SUFFIXES)}) nor a camera index')
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


def _camera_index(inputs: str) -> Optional[int]:
    """``'0'`` -> 0 when no file or folder of that name exists."""
    if inputs.isdigit() and not osp.exists(inputs):
        return int(inputs)
    return None


def _mask_record(res, out_dir: str, name: str) -> str:
    import numpy as np
    from PIL import Image
    mask = osp.join(out_dir, 'masks', name)
    os.makedirs(osp.dirname(mask), exist_ok=True)
    Image.fromarray(res.sem_seg.clip(0, 255).astype(np.uint8)).save(mask)
    return osp.relpath(mask, out_dir)


def _write_json(out_dir: str, out: dict) -> None:
    json_path = osp.join(out_dir, 'results.json')
    tmp = json_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, json_path)


def _infer_images(args, model, images: List[str]) -> List[dict]:
    from tqdm import tqdm

    from densebox.apis import DetResult, inference
    from densebox.visualization import save_image
    records = []
    with tqdm(total=len(images), desc='infer', unit='img') as bar:
        for start in range(0, len(images), args.batch_size):
            chunk = images[start:start + args.batch_size]
            for path, res in zip(chunk, inference(chunk, model, batch_size=args.batch_size,
                                                  score_thr=args.score_thr,
                                                  keep_image=not args.no_vis)):
                name = _out_name(path, args.inputs)
                if isinstance(res, DetResult):
                    record = res.to_dict()
                else:
                    record = res.to_dict(with_map=False)
                    record['mask'] = _mask_record(res, args.out_dir,
                                                  osp.splitext(name)[0] + '.png')
                if not args.no_vis:
                    vis = osp.join(args.out_dir, 'vis', name)
                    save_image(vis, res.plot())
                    record['vis'] = osp.relpath(vis, args.out_dir)
                records.append(record)
            bar.update(len(chunk))
    return records


def _infer_video(args, model, source) -> List[dict]:
    """Stream a video / camera through the model; write the annotated video."""
    from tqdm import tqdm

    from densebox.apis import DetResult, inference
    from .streams import VideoWriter, open_video, video_frames
    capture, info = open_video(source)
    capture.release()
    camera = isinstance(source, int)
    stem = f'camera{source}' if camera else osp.splitext(osp.basename(source))[0]
    out_video = args.out_video or osp.join(args.out_dir, 'vis', f'{stem}.mp4')
    frames = video_frames(source, max_frames=args.max_frames)
    total = info.frame_count or None
    if args.max_frames is not None:
        total = min(total or args.max_frames, args.max_frames)
    records = []
    writer = None if args.no_vis else VideoWriter(out_video, info.fps)
    try:
        with tqdm(total=total, desc='infer', unit='frame') as bar:
            for res in inference(frames, model, batch_size=args.batch_size,
                                 score_thr=args.score_thr, keep_image=not args.no_vis):
                res.path = None if camera else source
                if isinstance(res, DetResult):
                    record = res.to_dict()
                    drawn = None if writer is None else res.plot()
                else:
                    record = res.to_dict(with_map=False)
                    if args.save_masks:
                        record['mask'] = _mask_record(res, args.out_dir,
                                                      f'{stem}/{res.frame:06d}.png')
                    # a translucent legend keeps every frame the size of the video
                    drawn = None if writer is None else res.plot(legend='inside')
                if writer is not None:
                    writer.write(drawn)
                records.append(record)
                bar.update(1)
    except KeyboardInterrupt:  # a camera runs until stopped: keep what was done
        print(f'stopped after {len(records)} frames')
    finally:
        frames.close()
        if writer is not None:
            writer.close()
    if writer is not None:
        print(f'annotated video: {out_video} ({writer.frames} frames at {writer.fps:g} fps)')
    return records


def infer_main(argv: Optional[List[str]] = None) -> dict:
    """Entry point of ``densebox infer``; returns the dict written to results.json."""
    # Two positionals are CONFIG INPUTS (a zoo name needs no checkpoint), three are
    # CONFIG CHECKPOINT INPUTS.
    parser = infer_parser()
    args = parser.parse_args(argv)
    from densebox.apis import init_model

    from .streams import is_video_path
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    if args.max_frames is not None and args.max_frames < 1:
        parser.error('--max-frames must be >= 1')
    camera = _camera_index(args.inputs)
    video = camera if camera is not None else (args.inputs if is_video_path(args.inputs)
                                               else None)
    images = find_images(args.inputs) if video is None else None
    model = init_model(args.config, args.checkpoint, device=args.device, backend=args.backend)
    os.makedirs(args.out_dir, exist_ok=True)
    if video is None:
        records = _infer_images(args, model, images)
    else:
        records = _infer_video(args, model, video)
    out = dict(config=str(args.config), checkpoint=args.checkpoint,
               classes=list(model.dataset_meta['classes']), score_thr=args.score_thr,
               results=records)
    _write_json(args.out_dir, out)
    what = 'images' if video is None else 'frames'
    print(f'{len(records)} {what} -> {args.out_dir} (results.json'
          f'{", vis/" if not args.no_vis else ""})')
    return out
