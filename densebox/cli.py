"""Command line: ``densebox train|test|quickstart`` (``infer``, ``zoo``, ``plot-logs`` live in
their own modules; the command table and help are in :mod:`densebox.cli_support`);
tools/*.py call the same functions."""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional


def _add_cfg_options(parser: argparse.ArgumentParser) -> None:
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config entries, e.g. train_dataloader.batch_size=8 '
                             "optim_wrapper.optimizer.lr=0.01 'model.bbox_head.num_classes=3'. "
                             'A key that is not in the config is an error listing close '
                             'matches (max_epochs -> train_cfg.max_epochs); write +key=value '
                             'to add a new key on purpose')


def _load_config(config: str, cfg_options: Optional[dict], work_dir: Optional[str]):
    """Config file, checkout path, recipe name or zoo name -> Config (see
    :func:`densebox.tools_common.resolve_config`: every tool finds configs the same way)."""
    from densebox.tools_common import load_tool_config
    return load_tool_config(config, cfg_options, work_dir)


def _build_runner(cfg, check_keys=None):
    from densebox.tools_common import build_runner
    return build_runner(cfg, check_keys)


# --------------------------------------------------------------------------- train
def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='densebox train', description='Train a model from a config.')
    p.add_argument('config', help='config file, e.g. configs/ssd300_voc.py')
    p.add_argument('--work-dir', help='where logs and checkpoints go '
                                      '(default: work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from this checkpoint, or, without a value, from the latest '
                        'checkpoint in the work dir')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision training (float16 with a loss scaler; needs a GPU)')
    p.add_argument('--tensorboard', action='store_true',
                   help='also log to TensorBoard (pip install "densebox[tensorboard]")')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the learning rate with the total batch size')
    _add_cfg_options(p)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p


def train_main(argv: Optional[List[str]] = None):
    args = train_parser().parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = _load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    from densebox.tools_common import amp_plan, enable_tensorboard
    if args.tensorboard:
        enable_tensorboard(cfg)
    from densebox.engine.launch import init_distributed
    init_distributed(args.launcher, cfg)  # also on CPU (gloo)
    if args.amp:
        amp_plan('train')  # a clear error instead of mmengine's AssertionError without CUDA
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{args.config} has no auto_scale_lr.base_batch_size, which '
                           '--auto-scale-lr needs')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint {args.resume} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    from densebox.engine.batch_size import report_total_batch
    from densebox.zoo import check_starting_points
    check_starting_points(cfg, args.config)  # a missing starting point stops before any data
    runner = _build_runner(cfg)
    report_total_batch(runner.cfg, runner.world_size, args.auto_scale_lr, runner.logger,
                       args.config)
    from densebox.ops import speed_up_cpu_training
    speed_up_cpu_training(runner.model)  # CPU training only: each conv's fastest layout
    runner.train()
    return runner


# ---------------------------------------------------------------------------- test
def test_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='densebox test', description='Evaluate a checkpoint.')
    p.add_argument('config', help='config file, recipe name or model-zoo name')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='weights to evaluate (not needed by training-free models such as ReCo)')
    p.add_argument('--work-dir')
    p.add_argument('--show-dir', help='draw ground truth and prediction side by side into this '
                                      'folder (relative to the work dir unless absolute)')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='score threshold of --show-dir drawings and --plots confusion matrices')
    from densebox.test_options import add_test_arguments
    add_test_arguments(p)  # --out, --out-format, --plots, --tta, --amp, --no-progress
    _add_cfg_options(p)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p


# What `test` builds: the training parts of a config are not checked for it.
TEST_KEYS = ('model', 'test_dataloader', 'test_evaluator', 'test_cfg', 'default_hooks',
             'custom_hooks', 'visualizer')


def test_main(argv: Optional[List[str]] = None) -> dict:
    args = test_parser().parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = _load_config(args.config, args.cfg_options, args.work_dir)
    if args.checkpoint is None:
        _require_training_free(cfg, args.config)
    cfg.launcher = args.launcher
    from densebox.engine.launch import init_distributed
    init_distributed(args.launcher, cfg)  # also on CPU (gloo)
    cfg.load_from = args.checkpoint
    from densebox.test_options import apply_test_arguments
    apply_test_arguments(cfg, args, args.config)
    if args.show_dir is not None:
        cfg.default_hooks.visualization = dict(type='DrawPredictionsHook', out_dir=args.show_dir,
                                               score_thr=args.score_thr)
    runner = _build_runner(cfg, TEST_KEYS)
    return runner.test()


def _require_training_free(cfg, config: str) -> None:
    """A test without a checkpoint is only for models that need no trained weights."""
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    model_type = cfg.model.get('type')
    model_cls = MODELS.get(model_type) if isinstance(model_type, str) else model_type
    if not getattr(model_cls, 'training_free', False):
        raise ValueError(f'densebox test {config}: give the checkpoint to evaluate; only '
                         f'training-free models (ReCo) are tested without one, and '
                         f'{model_type} is not one')


# ---------------------------------------------------------------------- quickstart
QUICKSTART_CONFIGS = {'det': 'quickstart_ssd_shapes.py', 'seg': 'quickstart_seg_shapes.py',
                      'zero-shot': 'quickstart_reco_shapes.py'}


def quickstart_main(argv: Optional[List[str]] = None) -> dict:
    """Generate the shapes data if missing, train the quickstart model, and evaluate it."""
    p = argparse.ArgumentParser(prog='densebox quickstart',
                                description='Train and evaluate a small model on the built-in '
                                            'synthetic shapes data set (no download).')
    p.add_argument('--task', choices=sorted(QUICKSTART_CONFIGS), default='det',
                   help='det: a small SSD (COCO bbox mAP); seg: a small FFNet-style '
                        'segmenter (mIoU); zero-shot: ReCo with a tiny CLIP trained on '
                        'shapes captions (zero-shot mIoU, and with an untrained CLIP)')
    p.add_argument('--config', default=None,
                   help='default: configs/quickstart_ssd_shapes.py, quickstart_seg_shapes.py '
                        'or quickstart_reco_shapes.py')
    p.add_argument('--work-dir', default=None, help='default: work_dirs/<config name>')
    _add_cfg_options(p)
    args = p.parse_args(argv)
    from densebox.datasets.shapes import ensure_shapes
    config = args.config or _find_config(QUICKSTART_CONFIGS[args.task])
    cfg = _load_config(config, args.cfg_options, args.work_dir)
    if 'quickstart' in cfg:  # the zero-shot quickstart has its own pipeline
        from densebox.reco.quickstart import run_quickstart
        return run_quickstart(cfg)
    dataset = cfg.train_dataloader.dataset  # the config says where, and how much
    ensure_shapes(dataset.data_root, **(dataset.get('generate_cfg') or {}))
    runner = _build_runner(cfg)
    runner.train()
    metrics = runner.test()
    print('quickstart held-out metrics: ' +
          ', '.join(f'{k}={v:.4f}' for k, v in metrics.items() if isinstance(v, float)))
    return metrics


def _find_config(name: str) -> str:
    """Locate a config shipped in the repository's configs/ folder."""
    from densebox.config import resolve_config
    return resolve_config(name)[0]


COMMANDS = {'train': train_main, 'test': test_main, 'quickstart': quickstart_main}


def main(argv: Optional[List[str]] = None) -> None:
    """``densebox <command> ...``: see ``densebox --help``."""
    from densebox.cli_support import run
    code = run(argv)
    if code:
        sys.exit(code)


if __name__ == '__main__':
    main()
