"""The output and evaluation options of ``tools/test.py`` / ``densebox test``.

- ``--out PATH``: detectors write a COCO results JSON (``pycocotools`` ``COCO.loadRes``
  reads it), segmentors a folder of PNG label maps; ``--out-format densebox`` writes
  densebox's JSON dump of every prediction instead (boxes, scores, labels or label maps
  with the image ids and paths).
- ``--plots [DIR]``: PR curves per class and a confusion matrix
  (:class:`densebox.evaluation.analysis.EvaluationPlots`), by default in
  ``<work_dir>/plots``.
- ``--tta``: the config's ``tta_model`` and ``tta_pipeline`` (flip / multi-scale, as in
  MMDetection and MMSegmentation; :mod:`densebox.models.tta`).
- ``--amp``: float16 autocast on a GPU, bfloat16 autocast on a CPU with native bfloat16, a
  clear error otherwise.
- a progress bar over the test batches (``--no-progress`` turns it off).
"""
import argparse
import os.path as osp

__all__ = ['add_test_arguments', 'apply_test_arguments', 'model_task', 'OUT_FORMATS']

OUT_FORMATS = ('auto', 'coco', 'png', 'densebox')


def add_test_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--out', help='write the predictions: detectors -> a COCO results .json '
                                 '(image_id, category_id, bbox xywh, score), segmentors -> a '
                                 'folder of PNG label maps (see --out-format)')
    p.add_argument('--out-format', choices=OUT_FORMATS, default='auto',
                   help="auto (default): coco for detectors, png for segmentors; densebox: "
                        "densebox's JSON dump of every prediction")
    p.add_argument('--plots', nargs='?', const='', default=None, metavar='DIR',
                   help='write PR curves per class and a confusion matrix (default DIR: '
                        '<work_dir>/plots)')
    p.add_argument('--tta', action='store_true',
                   help="test-time augmentation with the config's tta_model / tta_pipeline")
    p.add_argument('--amp', action='store_true',
                   help='autocast: float16 on a GPU, bfloat16 on a CPU that has it natively')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--tensorboard', action='store_true',
                   help='also log the metrics to TensorBoard (pip install '
                        '"densebox[tensorboard]")')


def model_task(model_cfg) -> str:
    """``'det'`` or ``'seg'`` from a model config (a TTA wrapper is looked through): from its
    heads, or from the model class's ``task`` attribute."""
    while isinstance(model_cfg, dict) and isinstance(model_cfg.get('module'), dict):
        model_cfg = model_cfg['module']
    if 'bbox_head' in model_cfg:
        return 'det'
    if 'decode_head' in model_cfg:
        return 'seg'
    from densebox.registry import MODELS
    model_class = MODELS.get(model_cfg.get('type')) if isinstance(model_cfg.get('type'), str) \
        else model_cfg.get('type')
    if getattr(model_class, 'task', None) in ('det', 'seg'):  # models without those heads
        return model_class.task
    raise ValueError(f"cannot tell whether model type {model_cfg.get('type')!r} detects or "
                     'segments (it has neither bbox_head nor decode_head)')


def _innermost_dataset(loader_cfg):
    ds = loader_cfg['dataset']
    while isinstance(ds, dict) and isinstance(ds.get('dataset'), dict):
        ds = ds['dataset']
    return ds


def _add_evaluator(cfg, metric: dict) -> None:
    evaluators = cfg.test_evaluator
    evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
    evaluators.append(metric)
    cfg.test_evaluator = evaluators


def _apply_tta(cfg, config_name: str) -> None:
    missing = [k for k in ('tta_model', 'tta_pipeline') if not cfg.get(k)]
    if missing:
        raise SystemExit(
            f'--tta: {config_name} has no {" / ".join(missing)}. Add them to the config as '
            "MMDetection / MMSegmentation do, e.g. tta_model = dict(type='DetTTAModel') or "
            "dict(type='SegTTAModel') and tta_pipeline = [dict(type='LoadImageFromFile'), "
            "dict(type='TestTimeAug', transforms=[[resize options], [dict(type='RandomFlip', "
            "prob=0.0), dict(type='RandomFlip', prob=1.0)], [load annotations], [pack]])]")
    _innermost_dataset(cfg.test_dataloader)['pipeline'] = cfg.tta_pipeline
    tta_model = dict(cfg.tta_model)
    tta_model['module'] = cfg.model
    cfg.model = tta_model


def apply_test_arguments(cfg, args, config_name: str) -> None:
    """Change ``cfg`` (loaded for testing) as ``args`` (from :func:`add_test_arguments`) ask."""
    task = model_task(cfg.model)
    if args.tta:
        _apply_tta(cfg, config_name)
    if args.out is not None:
        fmt = args.out_format
        if fmt == 'auto':
            fmt = 'coco' if task == 'det' else 'png'
        if fmt == 'coco' and task != 'det':
            raise SystemExit('--out-format coco: COCO results are detections; this config '
                             'segments (use png or densebox)')
        if fmt == 'png' and task != 'seg':
            raise SystemExit('--out-format png: label maps are segmentation; this config '
                             'detects (use coco or densebox)')
        if fmt == 'coco':
            metric = dict(type='DumpCocoResults', out_file=args.out)
        elif fmt == 'png':
            metric = dict(type='DumpSegMasks', out_dir=args.out)
        else:
            metric = dict(type='DumpPredictions', out_file=args.out)
        _add_evaluator(cfg, metric)
    if args.plots is not None:
        out_dir = args.plots or osp.join(cfg.work_dir, 'plots')
        _add_evaluator(cfg, dict(type='EvaluationPlots', out_dir=out_dir,
                                 score_thr=getattr(args, 'score_thr', 0.3)))
    if args.amp:
        from densebox.tools_common import amp_plan
        amp_plan('test')  # a clear error where autocast cannot help
        test_loop = dict(cfg.get('test_cfg') or dict(type='TestLoop'))
        test_loop['fp16'] = True  # mmengine's TestLoop autocasts (bfloat16 on the CPU)
        cfg.test_cfg = test_loop
    if args.tensorboard:
        from densebox.tools_common import enable_tensorboard
        enable_tensorboard(cfg)
    if not args.no_progress:
        hooks = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='TestProgressBarHook'))
        cfg.custom_hooks = hooks
