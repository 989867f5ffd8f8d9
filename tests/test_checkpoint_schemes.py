"""No checkpoint URL scheme can run code from a file.

A crafted checkpoint whose pickle calls ``os.system('touch MARKER')`` is put where each scheme
would find it (the torch hub cache, mmengine's OpenMMLab table, a local HTTP server, fake pavi
and s3 backends) and loaded through that scheme: the marker must never appear and the error
must name the file.
"""
import functools
import http.server
import json
import os
import os.path as osp
import sys
import threading
import types

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint, load_checkpoint

import densebox.engine  # noqa: F401  (installs the safe loaders)
from densebox.engine.checkpoint import UnsafeCheckpointError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MOBILENET_V2_FILE = 'mobilenet_v2-b0353104.pth'  # the basename of torchvision's URL


class _RunsCode:
    """Unpickling this object runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / 'code_ran'
    yield path
    assert not path.exists(), 'the crafted checkpoint ran code'


def _write_crafted(path, marker):
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'payload': _RunsCode(marker)}, str(path))
    return str(path)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A private torch hub cache: ``$TORCH_HOME/hub/checkpoints``."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


def _refused(filename, *names, loader=_load_checkpoint):
    with pytest.raises(UnsafeCheckpointError) as info:
        loader(filename, map_location='cpu')
    for name in names:
        assert str(name) in str(info.value)
    return info.value


def test_local_path(tmp_path, marker):
    path = _write_crafted(tmp_path / 'evil.pth', marker)
    _refused(path, path)


@pytest.mark.parametrize('scheme', ['torchvision://', 'modelzoo://'])
def test_torchvision_scheme_reads_the_hub_cache_safely(hub, marker, scheme):
    cached = _write_crafted(hub / MOBILENET_V2_FILE, marker)
    _refused(scheme + 'mobilenet_v2', cached, scheme + 'mobilenet_v2')


def test_torchvision_scheme_loads_a_plain_state_dict(hub):
    os.makedirs(hub)
    torch.save({'features.0.0.weight': torch.ones(2)}, str(hub / MOBILENET_V2_FILE))
    state = _load_checkpoint('torchvision://mobilenet_v2', map_location='cpu')
    assert torch.equal(state['features.0.0.weight'], torch.ones(2))


def test_unknown_torchvision_name_suggests_close_ones(hub):
    with pytest.raises(KeyError, match='mobilenet_v2'):
        _load_checkpoint('torchvision://mobilenet_v22')


@pytest.mark.parametrize('scheme', ['open-mmlab://', 'openmmlab://'])
def test_openmmlab_scheme_url_entry(hub, marker, scheme):
    cached = _write_crafted(hub / 'vgg16_caffe-292e1171.pth', marker)  # open-mmlab://vgg16_caffe
    _refused(scheme + 'vgg16_caffe', cached)


@pytest.mark.parametrize('scheme', ['open-mmlab://', 'openmmlab://'])
def test_openmmlab_scheme_local_entry_of_mmengine_home(tmp_path, monkeypatch, marker, scheme):
    home = tmp_path / 'mmengine_home'
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    path = _write_crafted(home / 'mine' / 'evil.pth', marker)
    (home / 'open_mmlab.json').write_text(json.dumps({'my_backbone': 'mine/evil.pth'}))
    _refused(scheme + 'my_backbone', path, scheme + 'my_backbone')


def test_mmcls_scheme(hub, marker):
    table = json.load(open(osp.join(osp.dirname(__import__('mmengine').__file__),
                                    'hub', 'mmcls.json')))
    cached = _write_crafted(hub / osp.basename(table['vgg11']), marker)
    _refused('mmcls://vgg11', cached)


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    root = tmp_path / 'www'
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1')
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_http_download_is_loaded_safely(hub, http_root, marker):
    root, base = http_root
    _write_crafted(root / 'evil.pth', marker)
    _refused(f'{base}/evil.pth', hub / 'evil.pth', f'{base}/evil.pth')
    assert (hub / 'evil.pth').is_file()  # downloaded into the hub cache like torch.hub does


def test_http_download_of_a_plain_checkpoint(hub, http_root):
    root, base = http_root
    torch.save({'state_dict': {'w': torch.arange(3)}}, str(root / 'good.pth'))
    ckpt = _load_checkpoint(f'{base}/good.pth', map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(3))


def test_pavi_scheme(tmp_path, monkeypatch, marker):
    crafted = _write_crafted(tmp_path / 'src' / 'evil.pth', marker)

    class Model:
        name = 'evil.pth'

        def download(self, path):
            with open(crafted, 'rb') as src, open(path, 'wb') as dst:
                dst.write(src.read())

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=lambda name: Model())
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    _refused('pavi://project/evil', 'pavi://project/evil')


@pytest.mark.parametrize('url', ['s3://bucket/evil.pth', 'cluster1:s3://bucket/evil.pth',
                                 'petrel://bucket/evil.pth'])
def test_s3_and_petrel_schemes(tmp_path, monkeypatch, marker, url):
    import mmengine.fileio
    data = open(_write_crafted(tmp_path / 'evil.pth', marker), 'rb').read()
    backend = types.SimpleNamespace(get=lambda filename: data)
    monkeypatch.setattr(mmengine.fileio, 'get_file_backend', lambda *args, **kwargs: backend)
    _refused(url, url)


def _register_plugin(monkeypatch, loader):
    monkeypatch.setattr(CheckpointLoader, '_schemes', dict(CheckpointLoader._schemes))
    CheckpointLoader.register_scheme('plugin://', loader=loader)


def test_a_scheme_registered_later_cannot_unpickle_code(tmp_path, monkeypatch, marker):
    """A plugin's loader that calls torch.load(weights_only=False) itself is still safe."""
    path = _write_crafted(tmp_path / 'evil.pth', marker)

    def careless_loader(filename, map_location=None):
        return torch.load(path, map_location=map_location, weights_only=False)

    _register_plugin(monkeypatch, careless_loader)
    _refused('plugin://anything', path)
    assert torch.load is torch.serialization.load  # the guard is lifted afterwards


def test_mmengine_hub_helper_inside_a_later_scheme(hub, marker, monkeypatch):
    """mmengine's own load_url (torch.hub with weights_only=False) under a new prefix."""
    from mmengine.utils.dl_utils import load_url
    cached = _write_crafted(hub / MOBILENET_V2_FILE, marker)
    url = 'https://download.pytorch.org/models/' + MOBILENET_V2_FILE
    _register_plugin(monkeypatch,
                     lambda filename, map_location=None: load_url(url, weights_only=False))
    _refused('plugin://x', cached)


def test_torch_hub_and_torchvision_weights_default_to_weights_only(hub, marker):
    import torchvision
    _write_crafted(hub / MOBILENET_V2_FILE, marker)
    url = 'https://download.pytorch.org/models/' + MOBILENET_V2_FILE
    with pytest.raises(Exception, match='[Ww]eights only'):
        torch.hub.load_state_dict_from_url(url)
    with pytest.raises(Exception, match='[Ww]eights only'):
        torchvision.models.mobilenet_v2(weights='IMAGENET1K_V1')


def test_load_checkpoint_into_a_module(tmp_path, marker):
    path = _write_crafted(tmp_path / 'evil.pth', marker)
    _refused(path, path, loader=lambda f, map_location: load_checkpoint(torch.nn.Linear(1, 1), f,
                                                                        map_location))


def test_mobile_deeplabv3_backbone_init_from_the_hub_cache(hub, marker):
    """configs/mobile_deeplabv3_voc.py's backbone with init_cfg=torchvision://mobilenet_v2
    (what the recipe named before it moved to zoo://), applied by init_weights() (which
    training calls)."""
    from densebox.config import load_config
    from densebox.registry import MODELS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    cached = _write_crafted(hub / MOBILENET_V2_FILE, marker)
    cfg = load_config(osp.join(ROOT, 'configs', 'mobile_deeplabv3_voc.py'))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint='torchvision://mobilenet_v2')
    model = MODELS.build(cfg.model)
    with pytest.raises(UnsafeCheckpointError, match=MOBILENET_V2_FILE):
        model.init_weights()


def test_load_from_a_scheme_in_training(tmp_path, hub, marker):
    """``--cfg-options load_from=torchvision://mobilenet_v2`` stops before training."""
    from densebox.cli import train_main
    from densebox.datasets.shapes import generate_shapes
    _write_crafted(hub / MOBILENET_V2_FILE, marker)
    data = str(tmp_path / 'shapes')
    generate_shapes(data, num_train=2, num_val=1, img_size=(64, 64), seed=0)
    opts = [f'train_dataloader.dataset.data_root={data}/', f'val_dataloader.dataset.data_root={data}/',
            f'val_evaluator.ann_file={data}/annotations/instances_val.json',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'load_from=torchvision://mobilenet_v2']
    with pytest.raises(UnsafeCheckpointError, match=MOBILENET_V2_FILE):
        train_main([osp.join(ROOT, 'configs', 'quickstart_ssd_shapes.py'),
                    '--work-dir', str(tmp_path / 'work'), '--cfg-options', *opts])
    assert not [f for f in os.listdir(tmp_path / 'work') if f.endswith('.pth')]
