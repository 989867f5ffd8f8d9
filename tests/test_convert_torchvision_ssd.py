"""torchvision ssd300_vgg16 -> densebox: the converted model detects what torchvision detects.

The oracle is torchvision itself: a randomly initialised ``ssd300_vgg16``, run as its API
expects (float images in [0, 1], its own resize / normalisation / post-processing), against
densebox with the converted weights, run through its whole data path (the config's test
pipeline on in-memory arrays, the data preprocessor, ``mode='predict'``).

Two things make exact agreement possible and are part of the test design:

* The ten COCO ids torchvision predicts but COCO never uses get probability 0 (weight 0,
  bias -1e4), so torchvision's 91-way softmax equals densebox's 81-way one (the converter
  drops those channels; trained weights never had them as targets).
* The images are sized so that every bilinear weight of the resize to 300x300 is dyadic
  (375 -> 300: eighths, 600 -> 300: halves, 450 -> 300: quarters) and their pixel values
  are multiples of 16, so every resized pixel is an exact integer: densebox resizes uint8
  with OpenCV, torchvision resizes floats with ``F.interpolate``, and on general images the
  two differ by OpenCV's rounding to uint8 (< 1 grey level), which no tolerance at the
  1e-5 level survives.

What remains is float rounding (torchvision computes ``(x / 255 - m) * 255`` where densebox
computes ``x - 255 m``): about 2e-5 on the input, 3e-6 relative on the features. The class
head is scaled by 0.3 and the box head by 0.25 so that the top-200 scores spread over about
0.14-0.91 (distinct, no saturation at 1.0) and the boxes are not all clipped to the image;
the observed differences are then below 5e-6 on scores and 4e-4 px on boxes. Detections are
compared rank by rank; two ranks may trade places only when their scores are within the
score tolerance of each other (a near-tie that rounding can flip), which happened for no
rank with this seed.
"""
import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.detection.image_list import ImageList

from densebox.benchmark.e2e import (DenseboxSSD, TorchvisionSSD, densebox_from_torchvision,
                                    random_torchvision_ssd300)
from densebox.converters import (COCO_CATEGORY_IDS, TORCHVISION_NUM_LOGITS,
                                 convert_torchvision_ssd300)
from densebox.engine import safe_torch_load
from densebox.ops import speed_up_cpu_inference
from densebox.ops.conv import ENV_CPU_CONV, nnpack_available

ROOT = Path(__file__).resolve().parents[1]
SCORE_TOL = 1e-5
BOX_TOL = 1e-3
# (H, W): every resize weight to 300x300 is dyadic (see the module docstring).
IMAGE_SHAPES = ((375, 600), (450, 300))


@pytest.fixture(scope='module')
def models():
    tv = random_torchvision_ssd300(seed=0, cls_scale=0.3, reg_scale=0.25)
    db, cfg = densebox_from_torchvision(tv)
    return tv, db, cfg


def _exact_resize_images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 16, (h, w, 3)) * 16).astype(np.uint8) for h, w in IMAGE_SHAPES]


def _match_ranks(db: dict, tv: dict) -> int:
    """Assert ``db`` (labels already COCO ids) and ``tv`` hold the same detections in the same
    order, allowing swaps only inside runs of scores within SCORE_TOL. Returns how many
    ranks were not matched at their own position."""
    n = len(tv['scores'])
    assert len(db['scores']) == n
    assert torch.allclose(db['scores'], tv['scores'], rtol=0, atol=SCORE_TOL), \
        (db['scores'] - tv['scores']).abs().max()
    moved = 0
    start = 0
    while start < n:
        end = start + 1
        while end < n and tv['scores'][end - 1] - tv['scores'][end] <= SCORE_TOL:
            end += 1
        free = list(range(start, end))
        for i in range(start, end):
            hits = [j for j in free if db['labels'][j] == tv['labels'][i]
                    and (db['boxes'][j] - tv['boxes'][i]).abs().max() <= BOX_TOL]
            assert hits, (f'torchvision detection {i} (label {int(tv["labels"][i])}, score '
                          f'{float(tv["scores"][i]):.6f}, box {tv["boxes"][i].tolist()}) has no '
                          f'densebox twin among ranks {start}..{end - 1}')
            j = i if i in hits else hits[0]
            moved += j != i
            free.remove(j)
        start = end
    return moved


@pytest.mark.parametrize('conv_kernel', ['aten', 'nnpack'])
def test_detections_equal_torchvision(models, conv_kernel, monkeypatch):
    """Also with densebox's CPU fast paths (what init_model sets up), its 3x3 convs forced
    onto NNPACK's Winograd kernel: rounding differs, detections do not."""
    tv, db, cfg = models
    if conv_kernel == 'nnpack':
        if not nnpack_available():
            pytest.skip('this torch build has no NNPACK')
        db = copy.deepcopy(db)
        # 12 trunk + 3 extra-layer + 12 head 3x3 convs; pools 1-4 of the VGG trunk
        assert speed_up_cpu_inference(db) == dict(convs=27, max_pools=4)
    monkeypatch.setenv(ENV_CPU_CONV, conv_kernel)
    images = _exact_resize_images()
    with torch.inference_mode():
        ours = DenseboxSSD(db, cfg)(images)
        theirs = TorchvisionSSD(tv)(images)
    to_cat = torch.tensor(COCO_CATEGORY_IDS)
    for img, d, t in zip(images, ours, theirs):
        # non-trivial outputs: a full list, many classes, spread-out scores, boxes inside
        assert len(t['scores']) == cfg.model.test_cfg.max_per_img == 200
        assert len(t['labels'].unique()) >= 5
        assert t['scores'][0] - t['scores'][-1] > 0.1
        h, w = img.shape[:2]
        assert d['boxes'][:, 0::2].max() <= w + BOX_TOL and d['boxes'][:, 1::2].max() <= h + BOX_TOL
        moved = _match_ranks(dict(d, labels=to_cat[d['labels']]), t)
        assert moved <= 2, f'{moved} ranks swapped between near-tied scores'


def test_config_inputs_match_torchvision_transform(models):
    """The preprocessed batch equals torchvision's transformed batch up to float rounding."""
    tv, db, cfg = models
    images = _exact_resize_images()
    runner = DenseboxSSD(db, cfg)
    packed = [runner.pipeline(dict(img=img, img_path=None, img_id=i))
              for i, img in enumerate(images)]
    data = db.data_preprocessor(dict(inputs=[p['inputs'] for p in packed],
                                     data_samples=[p['data_samples'] for p in packed]), False)
    with torch.no_grad():
        theirs, _ = tv.transform([torch.from_numpy(i).permute(2, 0, 1).float() / 255
                                  for i in images])
    assert data['inputs'].shape == theirs.tensors.shape == (2, 3, 300, 300)
    assert (data['inputs'] - theirs.tensors).abs().max() < 1e-4


def test_anchors_match_torchvision_default_boxes(models):
    tv, db, _ = models
    generator = db.bbox_head.anchor_generator
    assert generator.clip
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    feats = [torch.zeros(1, 1, *s) for s in sizes]
    theirs = tv.anchor_generator(ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)]), feats)[0]
    ours = generator.grid_anchors(sizes)
    assert ours.shape == theirs.shape == (8732, 4)
    assert (ours - theirs).abs().max() < 1e-3
    # the 2:1 boxes of the 1x1 level are where torchvision's size clamping shows
    assert ours[-2:, 2:].sub(ours[-2:, :2]).max() == 300


def test_category_ids_follow_torchvision_names():
    from densebox.datasets.coco import COCO_CLASSES
    names = torchvision.models.detection.SSD300_VGG16_Weights.COCO_V1.meta['categories']
    assert len(names) == TORCHVISION_NUM_LOGITS
    assert [names[i] for i in COCO_CATEGORY_IDS] == list(COCO_CLASSES)
    unused = set(range(1, TORCHVISION_NUM_LOGITS)) - set(COCO_CATEGORY_IDS)
    assert {names[i] for i in unused} == {'N/A'} and names[0] == '__background__'


def test_head_channels_are_selected_per_anchor(models):
    tv, _, _ = models
    state = tv.state_dict()
    out = convert_torchvision_ssd300(state)['state_dict']
    src = state['head.classification_head.module_list.1.bias'].view(6, TORCHVISION_NUM_LOGITS)
    dst = out['bbox_head.cls_convs.1.bias'].view(6, 81)
    assert torch.equal(dst[:, 0], src[:, 0])
    assert torch.equal(dst[:, 1:], src[:, list(COCO_CATEGORY_IDS)])
    assert torch.equal(out['neck.l2_norm.weight'], state['backbone.scale_weight'])
    assert torch.equal(out['backbone.features.31.weight'], state['backbone.extra.0.7.1.weight'])


def test_converter_rejects_other_models(models):
    tv, _, _ = models
    state = dict(tv.state_dict())
    with pytest.raises(KeyError, match='backbone.scale_weight'):
        convert_torchvision_ssd300({k: v for k, v in state.items() if k != 'backbone.scale_weight'})
    with pytest.raises(KeyError, match='unexpected keys'):
        convert_torchvision_ssd300(dict(state, **{'backbone.extra.5.0.weight': torch.zeros(1)}))
    voc = dict(state)  # as torchvision's ssd300_vgg16(num_classes=21) would have it
    for level in range(6):
        for p in ('weight', 'bias'):
            key = f'head.classification_head.module_list.{level}.{p}'
            voc[key] = state[key].view(-1, TORCHVISION_NUM_LOGITS, *state[key].shape[1:])[:, :21]
            voc[key] = voc[key].reshape(-1, *state[key].shape[1:])
    with pytest.raises(ValueError, match='91 COCO logits'):
        convert_torchvision_ssd300(voc)
    with pytest.raises(ValueError, match='outside 1..90'):
        convert_torchvision_ssd300(state, category_ids=(1, 91), classes=('a', 'b'))


def test_cli_writes_a_loadable_checkpoint(models, tmp_path):
    tv, db, _ = models
    src, dst = tmp_path / 'tv.pth', tmp_path / 'out' / 'densebox.pth'
    torch.save(tv.state_dict(), src)
    spec = importlib.util.spec_from_file_location('convert_tv_ssd',
                                                  ROOT / 'tools' / 'convert' / 'torchvision_ssd.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.main([str(src), str(dst)])
    checkpoint = safe_torch_load(str(dst))
    assert checkpoint['meta']['dataset_meta']['classes'][0] == 'person'
    assert len(checkpoint['meta']['dataset_meta']['classes']) == 80
    assert set(checkpoint['state_dict']) == set(db.state_dict())
    for key, value in db.state_dict().items():
        assert torch.equal(checkpoint['state_dict'][key], value), key
    with pytest.raises(SystemExit, match='no such file'):
        cli.main([str(tmp_path / 'missing.pth'), str(dst)])
