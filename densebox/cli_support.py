"""The top level of the ``densebox`` command: help, ``--version`` and the subcommand table.

Kept apart from :mod:`densebox.cli` (which holds train / test / quickstart) so that
``densebox --help`` imports nothing heavy: each subcommand's module is imported only when
that subcommand runs.
"""
import difflib
import importlib
import sys
from typing import Callable, List, Optional

from .version import __version__

# name -> (module, function, one line of help)
SUBCOMMANDS = {
    'train': ('densebox.cli', 'train_main', 'train a model from a config (tools/train.py)'),
    'test': ('densebox.cli', 'test_main',
             'evaluate a checkpoint; --out COCO json / PNG masks, --plots, --tta, --show-dir'),
    'infer': ('densebox.apis.infer_cli', 'infer_main',
              'run a model on images, a folder, a video or a webcam; drawings + results.json'),
    'quickstart': ('densebox.cli', 'quickstart_main',
                   'train and evaluate a small model on generated shapes (no download)'),
    'zoo': ('densebox.zoo.cli', 'zoo_main',
            'published weights: list, info NAME, get NAME (fetch and convert)'),
    'plot-logs': ('densebox.visualization.log_plots', 'plot_logs_main',
                  'loss / lr / metric curves of one or more work dirs, overlaid'),
}


def _distribution_version(name: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return 'not installed'


def version_text() -> str:
    """``densebox 0.1.0 (torch ..., torchvision ..., mmengine ..., Python ...)``, read from
    the installed distributions (nothing is imported)."""
    stack = ', '.join(f'{n} {_distribution_version(n)}'
                      for n in ('torch', 'torchvision', 'mmengine', 'mmcv-lite'))
    py = '.'.join(map(str, sys.version_info[:3]))
    return f'densebox {__version__} ({stack}, Python {py})'


def help_text() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ['usage: densebox <command> [options]      (densebox <command> --help: its options)',
             '',
             f'densebox {__version__}: object detection and semantic segmentation on mmengine.',
             '',
             'commands:']
    lines += [f'  {name.ljust(width)}  {text}' for name, (_, _, text) in SUBCOMMANDS.items()]
    lines += ['',
              'options:',
              '  -h, --help     show this help and exit',
              '  -V, --version  print the versions of densebox and its stack and exit',
              '',
              'CONFIG: a file, a path inside the densebox checkout (configs/ssd300_voc.py, from',
              'any folder), a recipe name (ssd300_voc) or a model-zoo name (densebox zoo list).',
              'tools/train.py, test.py, infer.py and quickstart.py run the same code.',
              'Python: import densebox; densebox.init_model(...); densebox.inference(...)']
    return '\n'.join(lines)


def command(name: str) -> Callable:
    module, function, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(module), function)


def run(argv: Optional[List[str]] = None) -> int:
    """Run ``densebox ARGV``; returns the exit code (help and version: 0; an unknown
    command: 2, with the closest known name suggested)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(help_text())
        return 0
    if argv[0] in ('-V', '--version', 'version'):
        print(version_text())
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ''
        print(f"densebox: unknown command '{name}'.{hint} Commands: {', '.join(SUBCOMMANDS)} "
              '(densebox --help)', file=sys.stderr)
        return 2
    result = command(name)(argv[1:])
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
