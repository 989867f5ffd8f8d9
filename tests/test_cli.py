"""The top-level command: help, version, unknown commands, every subcommand's --help, the
zoo commands, config resolution shared by every tool, --amp without CUDA, and the README's
zoo table (generated from the manifest)."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from densebox import zoo
from densebox.cli_support import SUBCOMMANDS, command, run
from densebox.config import REPO_ROOT, resolve_config
from densebox.tools_common import amp_plan, enable_tensorboard, load_tool_config
from densebox.version import __version__
from densebox.zoo.cli import README_END, README_START, markdown_table

QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart_ssd_shapes.py')


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, '-m', 'densebox.cli', *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize('args', [[], ['--help'], ['-h']])
def test_help_lists_every_subcommand_and_exits_0(args, tmp_path):
    out = _cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for name in SUBCOMMANDS:  # one line each: the name, then what it does
        assert sum(bool(re.match(rf'\s+{re.escape(name)}\s+\S', ln)) for ln in lines) == 1, name
    assert '--version' in out.stdout and 'zoo list' in out.stdout
    assert max(len(ln) for ln in lines) <= 100


def test_help_imports_nothing_heavy():
    code = ('import sys; from densebox.cli_support import run; run(["--help"]); '
            'assert "torch" not in sys.modules and "mmengine" not in sys.modules')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=60)
    assert out.returncode == 0, out.stderr


def test_version_and_unknown_command(capsys):
    assert run(['--version']) == 0
    text = capsys.readouterr().out
    assert text.startswith(f'densebox {__version__} (') and f'torch {torch.__version__.split("+")[0]}' in text
    assert run(['tset']) == 2
    err = capsys.readouterr().err
    assert "unknown command 'tset'" in err and "Did you mean 'test'?" in err


@pytest.mark.parametrize('name', sorted(SUBCOMMANDS))
def test_every_subcommand_help_exits_0(name, capsys):
    with pytest.raises(SystemExit) as info:
        command(name)(['--help'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage:') and ('densebox ' + name) in out


def test_test_help_names_the_new_options(capsys):
    with pytest.raises(SystemExit):
        command('test')(['--help'])
    out = capsys.readouterr().out
    for option in ('--out', '--out-format', '--plots', '--tta', '--amp', '--no-progress',
                   '--show-dir', '--tensorboard'):
        assert option in out, option


# ---------------------------------------------------------------------------------- zoo
@pytest.fixture
def private_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    saved = dict(zoo.MANIFEST)
    yield tmp_path
    zoo.MANIFEST.clear()
    zoo.MANIFEST.update(saved)


def test_zoo_list_info_get(private_zoo, capsys):
    from mmengine.config import Config

    from densebox.registry import MODELS

    from densebox.setup_env import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    weights = private_zoo / 'tiny.pth'
    torch.save(MODELS.build(Config.fromfile(QUICKSTART).model).state_dict(), weights)
    zoo.register_model('tiny_det', kind='model', task='det', config=QUICKSTART,
                       url=str(weights), sha256=zoo.sha256_file(str(weights)),
                       converter='densebox', metric={'coco/bbox_mAP': 1.0}, license='MIT')

    assert run(['zoo', 'list']) == 0
    table = capsys.readouterr().out
    rows = {ln.split()[0]: ln for ln in table.splitlines() if ln.strip()}
    for name in zoo.list_models():
        assert name in rows, name
    assert 'cached' in table.splitlines()[0]
    assert rows['ssd300_coco_mmdet'].split()[-1] == 'no'
    assert 'coco/bbox_mAP 25.5' in rows['ssd300_coco_mmdet']
    assert rows['tiny_det'].endswith('local file')  # a path entry, not converted yet

    assert run(['zoo', 'info', 'ssd512_voc_mmdet']) == 0
    info = capsys.readouterr().out
    assert 'converter: mmdet_ssd' in info and 'ssd512_voc0712' in info and 'cfg_options' in info

    assert run(['zoo', 'get', 'tiny_det']) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert path == osp.join(zoo.cache_dir(), 'tiny_det.pth') and osp.isfile(path)
    run(['zoo', 'list', '--kind', 'model'])
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    assert rows['tiny_det'].split()[-1] == 'converted'
    assert 'resnet18_imagenet_torchvision' not in rows

    with pytest.raises(SystemExit, match="'nope' is not in the densebox model zoo"):
        run(['zoo', 'info', 'nope'])
    with pytest.raises(SystemExit, match='downloading is not allowed|not in the cache'):
        try:
            run(['zoo', 'get', 'ssd300_voc_mmdet'])
        except FileNotFoundError as err:  # no permission: the hub's message, as a user sees it
            raise SystemExit(str(err))


def test_readme_zoo_table_matches_the_manifest():
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        readme = f.read()
    assert README_START in readme and README_END in readme
    table = readme.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert table == markdown_table(), ('the README zoo table is stale: replace it with the '
                                       'output of `densebox zoo list --markdown`')
    for name in zoo.list_models():
        assert f'`{name}`' in table


# ------------------------------------------------------------------- config resolution
def test_configs_are_found_the_same_way_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout
    expected = QUICKSTART
    for given in ('configs/quickstart_ssd_shapes.py', 'quickstart_ssd_shapes',
                  'quickstart_ssd_shapes.py', expected):
        path, options, name = resolve_config(given)
        assert osp.samefile(path, expected) and options == {} and name is None, given
    # a zoo name brings its config and the overrides its weights need
    path, options, name = resolve_config('ssd512_voc_mmdet')
    assert osp.samefile(path, osp.join(REPO_ROOT, 'configs', 'ssd512_voc.py'))
    assert name == 'ssd512_voc_mmdet' and 'model.bbox_head.anchor_generator.min_sizes' in options
    # a zoo name wins over the recipe of the same name (it also brings the weights)
    assert resolve_config('ssd300_coco_torchvision')[2] == 'ssd300_coco_torchvision'
    # a file in the current folder wins over everything
    (tmp_path / 'configs').mkdir()
    local = tmp_path / 'configs' / 'quickstart_ssd_shapes.py'
    local.write_text(f'_base_ = [{expected!r}]\n')
    assert resolve_config('configs/quickstart_ssd_shapes.py')[0] == 'configs/quickstart_ssd_shapes.py'
    with pytest.raises(FileNotFoundError, match=r"'nope' is neither a config file nor a "
                                                r'model-zoo name.*ssd300_voc.*ssd300_coco_mmdet'):
        resolve_config('nope')

    cfg = load_tool_config('ssd512_voc_mmdet', {'train_dataloader.batch_size': 3})
    assert cfg.work_dir == osp.join('./work_dirs', 'ssd512_voc_mmdet')
    assert cfg.model.bbox_head.anchor_generator.min_sizes[0] == 35  # the zoo override
    assert cfg.train_dataloader.batch_size == 3


def test_tools_find_checkout_configs_from_outside(tmp_path):
    """tools/test.py from another folder: the config is found, so the next error is about
    the checkpoint the user named (before this, FileNotFoundError on the config)."""
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)  # the script puts its checkout on sys.path itself
    out = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'),
                          'configs/quickstart_ssd_shapes.py', 'missing.pth'],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode != 0
    assert 'checkpoint missing.pth does not exist' in out.stderr
    assert 'config' not in out.stderr.splitlines()[-1]


# --------------------------------------------------------------------------- --amp etc.
def test_amp_without_cuda_is_a_clear_error_or_cpu_bfloat16(monkeypatch):
    import densebox.tools_common as tc
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='needs a CUDA GPU and torch sees none'):
        amp_plan('train')
    monkeypatch.setattr(tc, 'cpu_supports_bf16', lambda: False)
    with pytest.raises(SystemExit, match='no native bfloat16'):
        amp_plan('test')
    monkeypatch.setattr(tc, 'cpu_supports_bf16', lambda: True)
    assert amp_plan('test') == 'cpu-bf16'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert amp_plan('train') == 'cuda'


def test_train_amp_without_cuda_stops_before_building_anything(monkeypatch):
    from densebox.cli import train_main
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='--amp: mixed-precision training'):
        train_main([QUICKSTART, '--amp', '--work-dir', '/nonexistent/never/created'])


def test_tensorboard_switch_writes_event_files(tmp_path):
    from mmengine.config import Config
    from mmengine.visualization import Visualizer
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = Config.fromfile(QUICKSTART)
    enable_tensorboard(cfg)
    enable_tensorboard(cfg)  # idempotent
    types = [b['type'] for b in cfg.visualizer.vis_backends]
    assert types == ['LocalVisBackend', 'TensorboardVisBackend']
    vis = Visualizer(name='tb_test', vis_backends=cfg.visualizer.vis_backends,
                     save_dir=str(tmp_path))
    for step in range(3):
        vis.add_scalars({'loss': 1.0 / (step + 1), 'coco/bbox_mAP': 0.1 * step}, step=step)
    vis.close()
    events = [osp.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs
              if f.startswith('events.out.tfevents')]
    assert events
    acc = EventAccumulator(osp.dirname(events[0]))
    acc.Reload()
    assert [round(e.value, 4) for e in acc.Scalars('loss')] == [1.0, 0.5, 0.3333]
    assert 'coco/bbox_mAP' in acc.Tags()['scalars']


def test_every_tool_script_imports_densebox_from_its_own_checkout():
    """A tools/ script run from a second checkout (or with another densebox installed) must
    use the densebox beside it: each puts its checkout first on sys.path before importing
    densebox at module level."""
    import ast
    from pathlib import Path
    tools = Path(REPO_ROOT) / 'tools'
    scripts = [p for p in tools.rglob('*.py') if 'densebox' in p.read_text()
               and re.search(r'^\s*(from|import) densebox', p.read_text(), re.M)]
    assert len(scripts) >= 10
    for path in scripts:
        depth = len(path.relative_to(REPO_ROOT).parts) - 1
        tree = ast.parse(path.read_text())
        inserts = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                   and ast.unparse(n.func) == 'sys.path.insert'
                   and f'parents[{depth}]' in ast.unparse(n)]
        first_import = min((n.lineno for n in ast.walk(tree)
                            if isinstance(n, (ast.Import, ast.ImportFrom))
                            and 'densebox' in ast.unparse(n)), default=None)
        assert inserts and first_import is not None and inserts[0] < first_import, path
