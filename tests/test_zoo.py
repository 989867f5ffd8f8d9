"""Model zoo: manifest, cache lookup, download permission, SHA-256 checks, conversion, and
the torchvision backbone converters. No network: URLs are file:// or local paths to
checkpoints made in tmp_path."""
import hashlib
import os
import os.path as osp
import shutil

import pytest
import torch
import torchvision
from mmengine.config import Config

import densebox
from densebox import zoo
from densebox.converters.torchvision_seg import (convert_torchvision_backbone_checkpoint,
                                                 convert_torchvision_resnet)
from densebox.engine.checkpoint import safe_torch_load
from densebox.registry import MODELS
from densebox.setup_env import register_all_modules

register_all_modules()
QUICKSTART = 'configs/quickstart_ssd_shapes.py'


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private cache folder, no download permission from the environment, and a
    manifest restored after each test."""
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    saved = dict(zoo.MANIFEST)
    yield
    zoo.MANIFEST.clear()
    zoo.MANIFEST.update(saved)


def _sha256(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


@pytest.fixture(scope='module')
def det_source(tmp_path_factory):
    """A densebox checkpoint of a random quickstart SSD (bare state dict, no meta)."""
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(QUICKSTART).model)
    path = str(tmp_path_factory.mktemp('src') / 'tiny_det.pth')
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def _register_det(url, sha256, **extra):
    zoo.register_model('tiny_det', kind='model', task='det', config=QUICKSTART, url=url,
                       sha256=sha256, converter='densebox', **extra)


def _cache_files():
    root = zoo.cache_dir()
    found = []
    for folder, _, files in os.walk(root):
        found += [osp.relpath(osp.join(folder, f), root) for f in files]
    return sorted(found)


# ------------------------------------------------------------------------------ manifest
def test_manifest_entries_are_complete():
    names = zoo.list_models()
    assert {'ssd300_coco_mmdet', 'ssd512_voc_mmdet', 'ssdlite_mobilenetv2_coco_mmdet',
            'ssd300_coco_torchvision', 'resnet18_imagenet_torchvision'} <= set(names)
    kinds = zoo.ZOO_KINDS
    assert set().union(*(zoo.list_models(kind) for kind in kinds)) == set(names)
    for name in names:
        entry = zoo.get_entry(name)
        assert entry['kind'] in kinds, name
        assert entry['url'].startswith('https://'), name
        assert callable(zoo.get_converter(entry['converter'])), name
        assert entry['sha256'] is None or len(entry['sha256']) == 64, name
        if entry['sha256_prefix']:
            # torchvision's and OpenMMLab's file names end in 8 hex digits of their SHA-256
            stem = osp.splitext(osp.basename(entry['url']))[0]
            assert stem.endswith('-' + entry['sha256_prefix']), name
        elif entry['url'].endswith('.zip'):
            # the FFNet release zips carry no hash; the member to read is named
            assert entry['archive_member'], name
        elif entry['sha256']:
            # OpenAI's CLIP URLs hold the whole SHA-256 as the folder name
            assert entry['url'].split('/')[-2] == entry['sha256'], name
        else:
            # published without a hash (DenseCLIP's share links, Hugging Face files): used
            # only unverified until the full SHA-256 is recorded
            stem = osp.splitext(osp.basename(entry['url']))[0]
            assert entry['kind'] == 'model' or (
                '-' not in stem and entry['url'].startswith('https://huggingface.co/')), name
        if entry['kind'] == 'model':
            assert entry['config'].startswith('configs/'), name
    with pytest.raises(KeyError, match='not in the densebox model zoo'):
        zoo.get_entry('no_such_model')
    with pytest.raises(ValueError, match='missing'):
        zoo.register_model('incomplete', kind='model', url='x.pth', converter='densebox')


def test_zoo_model_configs_build():
    """Every model entry's config (with its cfg_options) builds (on the meta device: the
    same construction without allocating or initialising the weights)."""
    for name in zoo.list_models('model'):
        entry = zoo.get_entry(name)
        if not osp.isfile(entry['config']):
            pytest.fail(f'{name}: config {entry["config"]} is missing')
        cfg = Config.fromfile(entry['config'])
        cfg.merge_from_dict(entry.get('cfg_options') or {})
        if cfg.get('custom_imports'):
            import importlib
            for module in cfg.custom_imports['imports']:
                importlib.import_module(module)
        with torch.device('meta'):
            MODELS.build(cfg.model)


# ------------------------------------------------------------------- lookup / verify / convert
def test_local_path_entry_converted_cached_and_loaded(det_source):
    path, state = det_source
    _register_det(path, _sha256(path))
    out = zoo.get_checkpoint('tiny_det')
    assert out == osp.join(zoo.cache_dir(), 'tiny_det.pth')
    assert zoo.cache_dir().startswith(os.environ['DENSEBOX_HOME'])
    ckpt = safe_torch_load(out)
    assert ckpt['meta']['zoo']['source_sha256'] == _sha256(path)
    assert ckpt['meta']['dataset_meta']['classes'] == ('circle', 'square', 'triangle', 'star',
                                                       'cross')
    for key, value in state.items():
        torch.testing.assert_close(ckpt['state_dict'][key], value, rtol=0, atol=0)
    assert _cache_files() == ['tiny_det.pth']  # a local path is not copied; no temp files
    mtime = os.path.getmtime(out)
    assert zoo.get_checkpoint('tiny_det') == out and os.path.getmtime(out) == mtime  # cached
    model = densebox.init_model('tiny_det', device='cpu')
    torch.testing.assert_close(model.state_dict()['bbox_head.cls_convs.0.weight'],
                               state['bbox_head.cls_convs.0.weight'], rtol=0, atol=0)


def test_download_needs_permission(det_source, monkeypatch):
    path, _ = det_source
    url = 'file://' + path
    _register_det(url, _sha256(path))
    with pytest.raises(FileNotFoundError, match='DENSEBOX_ALLOW_DOWNLOAD=1'):
        zoo.get_checkpoint('tiny_det')
    with pytest.raises(FileNotFoundError, match='downloading is not allowed'):
        densebox.init_model('tiny_det', device='cpu')
    assert _cache_files() == []
    monkeypatch.setenv('DENSEBOX_ALLOW_DOWNLOAD', '1')
    out = zoo.get_checkpoint('tiny_det')
    assert _cache_files() == ['downloads/tiny_det.pth', 'tiny_det.pth']
    assert _sha256(osp.join(zoo.cache_dir(), 'downloads', 'tiny_det.pth')) == _sha256(path)
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD')
    os.remove(out)  # a cached download is converted again without asking
    assert zoo.get_checkpoint('tiny_det') == out


def test_download_argument_and_checksum_mismatch(det_source):
    path, _ = det_source
    _register_det('file://' + path, '0' * 64)
    with pytest.raises(zoo.ChecksumError, match='does not match'):
        zoo.get_checkpoint('tiny_det', download=True)
    assert _cache_files() == []  # the corrupt download was removed, nothing converted
    _register_det('file://' + path, _sha256(path))
    assert osp.isfile(zoo.get_checkpoint('tiny_det', download=True))


def test_a_mismatching_file_put_in_the_cache_by_hand_is_kept(det_source):
    path, _ = det_source
    _register_det('file://' + path, '0' * 64)
    by_hand = osp.join(zoo.cache_dir(), 'downloads', 'tiny_det.pth')
    os.makedirs(osp.dirname(by_hand), exist_ok=True)
    shutil.copy(path, by_hand)
    with pytest.raises(zoo.ChecksumError, match='Delete it'):
        zoo.get_checkpoint('tiny_det')
    assert osp.isfile(by_hand)  # reported, never deleted: it is the user's file


def test_unverified_downloads_are_refused_unless_allowed(det_source, capsys):
    path, _ = det_source
    digest = _sha256(path)
    _register_det('file://' + path, None, sha256_prefix=digest[:8])
    with pytest.raises(RuntimeError, match='allow_unverified=True'):
        zoo.get_checkpoint('tiny_det', download=True)
    assert _cache_files() == []  # refused before downloading
    out = zoo.get_checkpoint('tiny_det', download=True, allow_unverified=True)
    assert osp.isfile(out) and digest in capsys.readouterr().out  # the hash is reported
    zoo.clear_cache()
    _register_det('file://' + path, None, sha256_prefix='ffffffff' if digest[:8] != 'ffffffff'
                  else '00000000')
    with pytest.raises(zoo.ChecksumError, match='does not match the zoo entry'):
        zoo.get_checkpoint('tiny_det', download=True, allow_unverified=True)
    assert _cache_files() == []  # checked before the rename: nothing reached the cache


def test_bad_conversions_never_reach_the_cache(det_source, monkeypatch):
    path, state = det_source
    monkeypatch.setitem(zoo.CONVERTERS, 'drops_a_key',
                        lambda ckpt, cfg: {k: v for k, v in ckpt.items()
                                           if k != 'neck.extra_layers.0.0.0.weight'})
    _register_det(path, _sha256(path))
    zoo.MANIFEST['tiny_det']['converter'] = 'drops_a_key'
    with pytest.raises(RuntimeError, match=r'do not fit.*neck\.extra_layers\.0\.0\.0\.weight'):
        zoo.get_checkpoint('tiny_det')
    assert _cache_files() == []


# --------------------------------------------------------------- torchvision backbones
def _randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith('running_var')
                        else torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


def test_resnet18_backbone_entry_gives_torchvision_features(tmp_path):
    tv = _randomize(torchvision.models.resnet18(), seed=1)
    src = str(tmp_path / 'resnet18-tv.pth')
    torch.save(tv.state_dict(), src)
    zoo.register_model('tv_resnet18', kind='backbone', config=None, url=src, sha256=_sha256(src),
                       converter='torchvision_backbone', converter_args={'arch': 'resnet18'})
    path = zoo.get_checkpoint('tv_resnet18')
    ours = MODELS.build(dict(type='FFNetResNet', arch='18',
                             init_cfg=dict(type='Pretrained', checkpoint=path)))
    ours.init_weights()
    ours.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = ours(x)
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for i, layer in enumerate((tv.layer1, tv.layer2, tv.layer3, tv.layer4)):
            y = layer(y)
            torch.testing.assert_close(feats[i], y)
    with pytest.raises(ValueError, match='holds backbone weights'):
        densebox.init_model('tv_resnet18')


def test_torchvision_backbone_converters_check_their_input():
    r34 = torchvision.models.resnet34().state_dict()
    assert set(convert_torchvision_resnet(r34, 'resnet34')) == \
        set(MODELS.build(dict(type='FFNetResNet', arch='34')).state_dict())
    with pytest.raises(KeyError, match=r"unexpected key 'layer1\.2\.conv1\.weight'"):
        convert_torchvision_resnet(r34, 'resnet18')  # 3 blocks in layer1: not a ResNet-18
    with pytest.raises(KeyError, match='conv3'):
        convert_torchvision_resnet(torchvision.models.resnet50().state_dict(), 'resnet34')
    with pytest.raises(ValueError, match='arch must be one of'):
        convert_torchvision_resnet(r34, 'resnet50')

    tv = _randomize(torchvision.models.mobilenet_v2(), seed=2)
    converted = convert_torchvision_backbone_checkpoint({'state_dict': tv.state_dict()},
                                                        arch='mobilenet_v2', prefix='backbone.')
    seg = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='MobileNetV2', out_indices=(7,)),
        decode_head=dict(type='FCNHead', in_channels=1280, channels=8, num_convs=1,
                         num_classes=3)))
    result = seg.load_state_dict(converted, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith('decode_head.') for k in result.missing_keys)
    seg.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(seg.backbone(x)[0], tv.features(x))


def test_infer_command_with_a_zoo_name(det_source, tmp_path):
    """`densebox infer NAME INPUT` (no checkpoint argument) takes the zoo's weights."""
    import cv2
    import numpy as np
    from densebox.apis.infer_cli import infer_main
    path, _ = det_source
    _register_det(path, _sha256(path))
    img = str(tmp_path / 'img.png')
    cv2.imwrite(img, np.full((40, 60, 3), 90, np.uint8))
    out = infer_main(['tiny_det', img, '--out-dir', str(tmp_path / 'out'), '--device', 'cpu',
                      '--no-vis'])
    assert out['checkpoint'] is None and len(out['results']) == 1
    assert out['classes'] == ['circle', 'square', 'triangle', 'star', 'cross']
    assert osp.isfile(osp.join(zoo.cache_dir(), 'tiny_det.pth'))
