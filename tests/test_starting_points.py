"""Recipes' ImageNet starting points: the converters on state dicts laid out as the published
files are (key names and shapes from the published architectures), the colour order the
first conv sees, the zoo:// scheme and zip members, and train.py stopping before training
when a starting point is missing. No network: every "published" file is made here."""
import os
import os.path as osp
import runpy
import shlex
import zipfile

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from mmengine.config import Config

from densebox import zoo
from densebox.cli import train_main
from densebox.converters.ffnet import convert_ffnet_imagenet
from densebox.converters.vgg16_reducedfc import (CAFFE_LAYER_INDEX,
                                                 convert_vgg16_reducedfc)
from densebox.engine.checkpoint import safe_torch_load
from densebox.models.backbones import FFNetResNet, SSDVGG
from densebox.zoo.starting_points import (CONVERTER_SCRIPTS, StartingPointMissing,
                                          check_starting_points, converter_command,
                                          find_starting_points)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPES = ['ssd300_voc.py', 'ssd512_voc.py', 'ssd300_coco.py', 'ssd512_coco.py',
           'ssd300_coco_torchvision.py', 'ffnet_78s_cityscapes.py', 'ffnet_150_cityscapes.py',
           'mobile_deeplabv3_voc.py']
CAFFE_MEAN_BGR = torch.tensor([104.0, 117.0, 123.0])


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private cache folder, no download permission, and the manifest restored."""
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    saved = dict(zoo.MANIFEST)
    yield
    zoo.MANIFEST.clear()
    zoo.MANIFEST.update(saved)


# ------------------------------------------------------------------ published VGG16 forms
def caffe_vgg16_state(seed: int = 0, layout: str = 'caffe') -> dict:
    """A reduced-fc VGG16 state dict as the Caffe model's layers are named (conv1_1 ... fc7,
    fc6 a (1024, 512, 3, 3) conv, fc7 (1024, 1024, 1, 1)) or, with ``layout='features'``,
    as OpenMMLab's vgg16_caffe keys them (features.<i>), or ``'bare'`` (ssd.pytorch's
    nn.ModuleList: <i>). Values: Xavier-scale random, so activations stay sane."""
    g = torch.Generator().manual_seed(seed)
    channels = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    shapes = [(o, i, 3, 3) for i, o in channels] + [(1024, 512, 3, 3), (1024, 1024, 1, 1)]
    state = {}
    for (name, index), shape in zip(CAFFE_LAYER_INDEX.items(), shapes):
        fan = shape[1] * shape[2] * shape[3]
        key = {'caffe': name, 'features': f'features.{index}', 'bare': str(index)}[layout]
        state[f'{key}.weight'] = torch.randn(shape, generator=g) * (1.0 / fan) ** 0.5
        state[f'{key}.bias'] = torch.randn(shape[0], generator=g) * 0.01
    return state


def test_caffe_layouts_convert_to_the_same_weights():
    caffe = convert_vgg16_reducedfc(caffe_vgg16_state(1, 'caffe'), 'bgr')['state_dict']
    for layout in ('features', 'bare'):
        other = convert_vgg16_reducedfc(caffe_vgg16_state(1, layout), 'bgr')['state_dict']
        assert other.keys() == caffe.keys()
        for key in caffe:
            torch.testing.assert_close(other[key], caffe[key], rtol=0, atol=0)
    with torch.device('meta'):
        target = SSDVGG().state_dict()
    assert set(caffe) == set(target)  # conv1_1 ... conv5_3, fc6 and fc7: all of SSDVGG


def test_bgr_caffe_weights_see_the_same_pixels_in_rgb():
    """The converted model fed an RGB image computes what the Caffe model computes on the
    BGR version of it (0-255 minus the mean in each one's order), from conv1_1 to fc7."""
    source = caffe_vgg16_state(2, 'caffe')
    converted = convert_vgg16_reducedfc(source, 'bgr')
    assert converted['meta']['not_in_source'] == []
    rgb = torch.randint(0, 256, (1, 3, 40, 48)).float()
    bgr = rgb.flip(1)
    bgr_in = bgr - CAFFE_MEAN_BGR.view(1, 3, 1, 1)
    rgb_in = rgb - CAFFE_MEAN_BGR.flip(0).view(1, 3, 1, 1)

    # conv1_1 itself, against a plain convolution with Caffe's filters on BGR
    want = F.conv2d(bgr_in, source['conv1_1.weight'], source['conv1_1.bias'], padding=1)
    got = F.conv2d(rgb_in, converted['state_dict']['features.0.weight'],
                   converted['state_dict']['features.0.bias'], padding=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    # ... and unconverted the order matters (the test can tell the two apart)
    wrong = F.conv2d(rgb_in, source['conv1_1.weight'], source['conv1_1.bias'], padding=1)
    assert (wrong - want).abs().max() > 1.0

    # the whole trunk: Caffe's weights as they are on BGR vs converted ones on RGB
    caffe_model = SSDVGG(init_cfg=None).eval()
    caffe_model.load_state_dict({f'features.{CAFFE_LAYER_INDEX[k.split(".")[0]]}.'
                                 f'{k.split(".")[1]}': v for k, v in source.items()})
    ours = SSDVGG(init_cfg=None).eval()
    ours.load_state_dict(converted['state_dict'])
    with torch.no_grad():
        for a, b in zip(ours(rgb_in), caffe_model(bgr_in)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


def test_torchvision_vgg16_features_keep_rgb_and_lack_fc():
    """torchvision's IMAGENET1K_FEATURES file is a whole vgg16 state dict (its classifier
    unusable): the converted backbone's conv4_3 equals torchvision's features[:23] on the
    same RGB input, and fc6 / fc7 are reported absent."""
    torch.manual_seed(3)
    features = torchvision.models.vgg16().features.eval()
    with torch.device('meta'):
        classifier = torchvision.models.vgg16().classifier.state_dict()
    state = {f'features.{k}': v for k, v in features.state_dict().items()}
    state.update({f'classifier.{k}': v for k, v in classifier.items()})  # shapes only
    converted = convert_vgg16_reducedfc(state, 'rgb')
    assert converted['meta']['not_in_source'] == ['features.31', 'features.33']
    ours = SSDVGG(out_feature_indices=(22,), init_cfg=None).eval()
    result = ours.load_state_dict(converted['state_dict'], strict=False)
    assert sorted(result.missing_keys) == ['features.31.bias', 'features.31.weight',
                                           'features.33.bias', 'features.33.weight']
    x = torch.rand(1, 3, 64, 64) * 255 - 118  # H / 4 even: pool3's ceil_mode changes nothing
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], features[:23](x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(converted['state_dict']['features.0.weight'],
                                   features[0].weight)  # RGB source: not reordered


def test_vgg_converter_refuses_what_is_not_a_reduced_fc_vgg16():
    state = caffe_vgg16_state(4, 'caffe')
    with pytest.raises(ValueError, match='channel_order'):
        convert_vgg16_reducedfc(state, 'grb')
    full_fc = dict(state, **{'fc6.weight': torch.zeros(4096, 512, 7, 7)})
    with pytest.raises(ValueError, match=r"'fc6\.weight' has shape \(4096, 512, 7, 7\)"):
        convert_vgg16_reducedfc(full_fc, 'bgr')
    with pytest.raises(KeyError, match='not VGG16 layers'):
        convert_vgg16_reducedfc(dict(state, **{'conv6_1.weight': torch.zeros(1)}), 'bgr')
    with pytest.raises(KeyError, match='lacks'):
        convert_vgg16_reducedfc({k: v for k, v in state.items() if 'conv3_2' not in k}, 'bgr')
    with pytest.raises(ValueError, match='only one of fc6 / fc7'):
        convert_vgg16_reducedfc({k: v for k, v in state.items() if 'fc7' not in k}, 'bgr')


# --------------------------------------------------------------- FFNet's ImageNet models
class _Block(nn.Module):
    """FFNet's models/resnet.py BasicBlock, by its module names."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if cin != cout or stride != 1 else None)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _FFNetSlimClassifier(nn.Module):
    """The layout of FFNet's ``classification_ffnetXXS_BBX_mobile``: ``backbone_model``
    (ResNetS: conv0/bn0 32 ch s2, conv1/bn1 64 ch s2, layers of widths 64/128/192/320 with
    strides 1/2/2/2) and a ``head`` (here a stand-in with FFNet's first key names)."""

    def __init__(self, blocks):
        super().__init__()
        backbone = nn.Module()
        backbone.conv0 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        backbone.bn0 = nn.BatchNorm2d(32)
        backbone.conv1 = nn.Conv2d(32, 64, 3, 2, 1, bias=False)
        backbone.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (n, width, stride) in enumerate(zip(blocks, (64, 128, 192, 320), (1, 2, 2, 2))):
            setattr(backbone, f'layer{i + 1}',
                    nn.Sequential(*[_Block(cin if b == 0 else width, width,
                                           stride if b == 0 else 1) for b in range(n)]))
            cin = width
        self.backbone_model = backbone
        self.head = nn.Module()
        self.head.layers = nn.Sequential(nn.Conv2d(320, 8, 1), nn.BatchNorm2d(8))

    def features(self, x):
        b = self.backbone_model
        x = F.relu(b.bn1(b.conv1(F.relu(b.bn0(b.conv0(x))))))
        outs = []
        for i in range(4):
            x = getattr(b, f'layer{i + 1}')(x)
            outs.append(x)
        return outs


def _randomized(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith('running_var')
                        else torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


def test_ffnet_imagenet_backbone_computes_what_ffnet_computes():
    source = _randomized(_FFNetSlimClassifier((2, 3, 3, 2)), seed=5)  # ResNet-22S
    state = convert_ffnet_imagenet(source.state_dict(), arch='22S')
    assert not any(k.startswith(('head.', 'backbone_model.')) for k in state)
    ours = FFNetResNet(arch='22S').eval()
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(ours(x), source.features(x)):
            torch.testing.assert_close(a, b)
    # the 'd' model starts from the same weights; only its strided layer1.0 projection is new
    result = FFNetResNet(arch='d22S').load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == sorted(  # (BN fills in num_batches_tracked itself)
        f'layer1.0.downsample.{k}' for k in ('0.weight', '1.weight', '1.bias', '1.running_mean',
                                             '1.running_var'))
    assert not result.unexpected_keys


def test_ffnet_converter_key_sets_of_the_published_depths_and_errors():
    with torch.device('meta'):  # 78S and 150 at full size, without allocating them
        for arch, blocks in (('78S', (6, 12, 12, 8)),):
            state = _FFNetSlimClassifier(blocks).state_dict()
            assert set(convert_ffnet_imagenet(state, arch)) == set(FFNetResNet(arch).state_dict())
        tv = torchvision.models.resnet34().state_dict()  # A family = torchvision's names
        a_state = {f'backbone_model.{k}': v for k, v in tv.items() if not k.startswith('fc.')}
        a_state['head.layers.0.weight'] = torch.empty(1)
        assert set(convert_ffnet_imagenet(a_state, '34')) == set(FFNetResNet('34').state_dict())
        with pytest.raises(KeyError, match='missing'):
            convert_ffnet_imagenet(a_state, '150')
        with pytest.raises(KeyError, match='not FFNet 18 backbone keys'):
            convert_ffnet_imagenet(a_state, '18')
    with pytest.raises(ValueError, match="convert with arch='78S'"):
        convert_ffnet_imagenet({}, 'd78S')


# ------------------------------------------------------- zoo entries, zip members, zoo://
def _zip(path, members: dict):
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(path)


def test_zip_member_entry_converts_and_loads_through_zoo_scheme(tmp_path, capsys, monkeypatch):
    source = _randomized(_FFNetSlimClassifier((2, 3, 3, 2)), seed=6)
    pth = tmp_path / 'ffnet22S_BBX_imagenet_state_dict_quarts.pth'
    torch.save(source.state_dict(), pth)
    archive = _zip(tmp_path / 'ffnet22S.zip', {
        'ffnet22S/ffnet22S_BBX_imagenet_state_dict_quarts.pth': pth.read_bytes(),
        'ffnet22S/ffnet22S_dBBB_cityscapes_state_dict_quarts.pth': b'other weights'})
    monkeypatch.setenv('DENSEBOX_ALLOW_DOWNLOAD', '1')
    zoo.register_model('ffnet22s_test', kind='backbone', config=None, url='file://' + archive,
                       sha256=None,
                       sha256_prefix=None,
                       archive_member='ffnet22S/ffnet22S_BBX_imagenet_state_dict_quarts.pth',
                       converter='ffnet_imagenet', converter_args={'arch': '22S'})
    backbone = FFNetResNet(arch='22S', init_cfg=dict(type='Pretrained',
                                                     checkpoint='zoo://ffnet22s_test'))
    backbone.init_weights()
    assert 'SHA-256' in capsys.readouterr().out  # used unverified: the hash is printed
    backbone.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[3], source.features(x)[3])
    downloads = sorted(os.listdir(osp.join(zoo.cache_dir(), 'downloads')))
    assert downloads == ['ffnet22S.zip',  # the archive and the one member, no temporary files
                         'ffnet22S_BBX_imagenet_state_dict_quarts.pth']
    assert osp.isfile(osp.join(zoo.cache_dir(), 'ffnet22s_test.pth'))

    zoo.MANIFEST['ffnet22s_test']['archive_member'] = 'ffnet22S/missing.pth'
    os.remove(osp.join(zoo.cache_dir(), 'ffnet22s_test.pth'))
    with pytest.raises(FileNotFoundError, match=r"no member 'ffnet22S/missing\.pth'.*cityscapes"):
        zoo.get_checkpoint('ffnet22s_test', allow_unverified=True)


def test_every_recipe_names_a_known_starting_point_and_the_quickstarts_none():
    for recipe in RECIPES:
        cfg = Config.fromfile(osp.join(ROOT, 'configs', recipe))
        points = find_starting_points(cfg)
        assert [key for key, _ in points] == ['model.backbone.init_cfg'], recipe
        entry = zoo.get_entry(points[0][1])
        assert entry['kind'] == 'backbone', recipe
        # the converter command the error prints is accepted by its wrapper's parser
        command = shlex.split(converter_command(points[0][1], 'SRC.pth'))
        script = runpy.run_path(osp.join(ROOT, CONVERTER_SCRIPTS[entry['converter']]))
        args = script['parse_args'](command[2:])
        assert args.src == 'SRC.pth' and args.dst.endswith(f'{points[0][1]}.pth'), recipe
    for quickstart in ('quickstart_ssd_shapes.py', 'quickstart_seg_shapes.py',
                       'ssdlite_mobilenetv2_coco.py'):  # SSDLite: mmdetection's scratch recipe
        assert find_starting_points(Config.fromfile(osp.join(ROOT, 'configs', quickstart))) == []


def test_train_stops_before_the_runner_when_the_starting_point_is_missing(monkeypatch):
    import densebox.cli as cli

    class RunnerBuilt(Exception):
        pass

    def no_runner(cfg):
        raise RunnerBuilt(cfg.model.backbone.init_cfg)

    monkeypatch.setattr(cli, '_build_runner', no_runner)
    config = osp.join(ROOT, 'configs', 'ssd300_voc.py')
    with pytest.raises(StartingPointMissing) as err:
        train_main([config])
    message = str(err.value)
    for part in ('vgg16_caffe-292e1171.pth',
                 'https://download.openmmlab.com/pretrain/third_party/vgg16_caffe-292e1171.pth',
                 osp.join(zoo.cache_dir(), 'downloads'), 'tools/convert/vgg16_reducedfc.py',
                 '--channel-order bgr', 'DENSEBOX_ALLOW_DOWNLOAD=1',
                 '--cfg-options model.backbone.init_cfg=None'):
        assert part in message, part
    assert not osp.exists(zoo.cache_dir())  # nothing written, nothing downloaded
    # the flag the message gives trains from scratch on purpose: the runner is built
    with pytest.raises(RunnerBuilt, match='None'):
        train_main([config, '--cfg-options', 'model.backbone.init_cfg=None'])


def test_the_converter_command_of_the_message_makes_the_starting_point(tmp_path, monkeypatch):
    """The user's way out without internet: run the printed command on the published file;
    the recipe then resolves, and its backbone loads the converted weights."""
    source = caffe_vgg16_state(7, 'features')  # OpenMMLab's keys
    src = str(tmp_path / 'vgg16_caffe-292e1171.pth')
    torch.save(source, src)
    command = shlex.split(converter_command('vgg16_reducedfc_imagenet_openmmlab', src))
    script = osp.relpath(osp.join(ROOT, CONVERTER_SCRIPTS['vgg16_reducedfc']))
    assert command[:2] == ['python', script]
    runpy.run_path(osp.join(ROOT, command[1]))['main'](command[2:])
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'ssd300_voc.py'))
    resolved = check_starting_points(cfg, 'ssd300_voc.py')
    assert resolved == {'model.backbone.init_cfg':
                        osp.join(zoo.cache_dir(), 'vgg16_reducedfc_imagenet_openmmlab.pth')}
    backbone = SSDVGG(init_cfg=cfg.model.backbone.init_cfg)
    backbone.init_weights()
    torch.testing.assert_close(backbone.features[0].weight, source['features.0.weight'].flip(1))
    torch.testing.assert_close(backbone.features[33].weight, source['features.33.weight'])
    assert safe_torch_load(resolved['model.backbone.init_cfg'])['meta']['source_channel_order'] \
        == 'bgr'


def test_unknown_zoo_name_and_a_wrong_file_name_the_key_and_the_flag(tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'ffnet_78s_cityscapes.py'))
    cfg.model.backbone.init_cfg.checkpoint = 'zoo://no_such_weights'
    with pytest.raises(KeyError, match=r'zoo://no_such_weights.*model\.backbone\.init_cfg=None'):
        check_starting_points(cfg, 'ffnet_78s_cityscapes.py')
    # a file in the cache that is not the FFNet 78S ImageNet model: refused, named, no cache
    wrong = tmp_path / 'home' / 'checkpoints' / 'downloads'
    wrong.mkdir(parents=True)
    torch.save({'backbone_model.conv1.weight': torch.zeros(64, 3, 7, 7)},
               wrong / 'ffnet78S_BBX_imagenet_state_dict_quarts.pth')
    cfg.model.backbone.init_cfg.checkpoint = 'zoo://ffnet78s_imagenet_qualcomm'
    with pytest.raises(RuntimeError, match=r'(?s)could not be prepared.*conv1\.weight.*'
                                           r'init_cfg=None'):
        check_starting_points(cfg, 'ffnet_78s_cityscapes.py')
    assert not osp.exists(osp.join(zoo.cache_dir(), 'ffnet78s_imagenet_qualcomm.pth'))


def test_mobile_deeplabv3_starts_from_torchvision_mobilenet_v2(tmp_path):
    """The Mobile DeepLabv3 recipe's starting point, made by the converter command from a
    torchvision mobilenet_v2 state dict: the backbone (no 1280 conv) computes torchvision's
    features; a file that lacks some of the backbone's keys is refused, not half loaded."""
    from densebox.models.backbones import MobileNetV2
    tv = _randomized(torchvision.models.mobilenet_v2(), seed=8)
    src = str(tmp_path / 'mobilenet_v2-7ebf99e0.pth')
    torch.save(tv.state_dict(), src)
    name = 'mobilenet_v2_imagenet_torchvision'
    command = shlex.split(converter_command(name, src))
    runpy.run_path(osp.join(ROOT, command[1]))['main'](command[2:])
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'mobile_deeplabv3_voc.py'))
    assert check_starting_points(cfg) == {'model.backbone.init_cfg':
                                          osp.join(zoo.cache_dir(), f'{name}.pth')}
    backbone = MobileNetV2(out_indices=(6,), init_cfg=cfg.model.backbone.init_cfg)
    backbone.init_weights()
    backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[0], tv.features[:18](x))

    cached = osp.join(zoo.cache_dir(), f'{name}.pth')
    ckpt = safe_torch_load(cached)
    del ckpt['state_dict']['stages.3.0.expand.conv.weight']
    torch.save(ckpt, cached)
    with pytest.raises(RuntimeError, match=r'does not fit this backbone.*stages\.3\.0\.expand'):
        MobileNetV2(out_indices=(6,), init_cfg=cfg.model.backbone.init_cfg).init_weights()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))  # would create the marker file when unpickled


def test_a_crafted_file_in_the_zoo_cache_never_runs(tmp_path):
    """zoo:// loads with weights_only=True: a cached "checkpoint" whose pickle would run code
    is refused and the code does not run."""
    marker = str(tmp_path / 'ran')
    os.makedirs(zoo.cache_dir())
    torch.save({'state_dict': {'x': _RunsCode(marker)}},
               osp.join(zoo.cache_dir(), 'ffnet78s_imagenet_qualcomm.pth'))
    backbone = FFNetResNet(arch='d78S', init_cfg=dict(
        type='Pretrained', checkpoint='zoo://ffnet78s_imagenet_qualcomm'))
    with pytest.raises(RuntimeError, match='weights_only=True'):
        backbone.init_weights()
    assert not osp.exists(marker)
