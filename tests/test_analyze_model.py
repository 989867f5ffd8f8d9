"""Parameter / FLOP counting (densebox.models.utils.analyze, tools/analyze_model.py)."""
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
import torchvision
from mmengine.registry import init_default_scope

# Importing the modules registers the classes.
from densebox.models.backbones.mobilenet_v2 import MobileNetV2
from densebox.models import data_preprocessor  # noqa: F401
from densebox.models import seg_heads, segmentors  # noqa: F401
from densebox.models.backbones import ffnet_resnet  # noqa: F401
from densebox.models.utils import analyze, count_parameters
from densebox.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import analyze_model  # noqa: E402

init_default_scope('densebox')


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_flops_of_a_small_network_against_hand_count():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8),   # depthwise
                        nn.Conv2d(8, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10))
    out = analyze(net, (32, 48))
    madds = (3 * 8 * 9) * 16 * 24 + (1 * 8 * 9) * 16 * 24 + (8 * 4) * 16 * 24 + 4 * 10
    assert out['madds'] == madds
    assert out['flops'] == 2 * madds
    assert out['params'] == count_parameters(net)


def test_analyze_builds_a_config():
    cfg = dict(type='EncoderDecoder',
               backbone=dict(type='FFNetResNet', arch='22S'),
               decode_head=dict(type='FFNetUpHead', in_channels=(64, 128, 192, 320),
                                num_classes=5, up_head='C', seg_head='C'))
    out = analyze(cfg, (64, 96))
    assert out['params'] == count_parameters(MODELS.build(cfg))
    assert out['flops'] > 0 and out['madds'] == out['flops'] // 2
    # FLOPs of a fully convolutional model grow with the pixel count
    assert abs(analyze(cfg, (128, 192))['flops'] / out['flops'] - 4) < 0.05


def test_mobilenet_v2_classifier_matches_paper_and_torchvision():
    ours = nn.Sequential(MobileNetV2(out_indices=(7,)), _First(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, 1000))
    mine = analyze(ours, (224, 224))
    ref = analyze(torchvision.models.mobilenet_v2(), (224, 224))
    print(f'\nMobileNetV2 1.0 classification: {mine["params"]:,} params, '
          f'{mine["madds"] / 1e6:.1f}M MAdds at 224 (paper 3.4M / 300M; '
          f'torchvision {ref["params"]:,} / {ref["madds"] / 1e6:.1f}M)')
    assert mine == ref
    assert abs(mine['params'] / 3.4e6 - 1) < 0.04
    assert abs(mine['madds'] / 300e6 - 1) < 0.02


def test_tool_on_mobile_deeplabv3_config(capsys):
    cfg = osp.join(ROOT, 'configs', '_base_', 'models', 'mobile_deeplabv3.py')
    out = analyze_model.main([cfg, '--shape', '513', '513'])
    printed = capsys.readouterr().out
    with capsys.disabled():
        print(f'\nMobile DeepLabv3 @513: {out["params"]:,} params (paper 2.11M), '
              f'{out["madds"] / 1e9:.3f}B MAdds (paper 2.75B)')
    assert 'params: 2,113,557' in printed and 'MAdds:' in printed
    assert abs(out['params'] / 2.11e6 - 1) < 0.01
    assert abs(out['madds'] / 2.75e9 - 1) < 0.02


class _First(nn.Module):
    def forward(self, feats):
        return feats[0]
