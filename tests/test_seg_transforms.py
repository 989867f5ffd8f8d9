"""Segmentation transforms: sizes, the cat_max_ratio crop rule, and masks following images."""
import numpy as np
import pytest
from mmcv.transforms import Compose
from PIL import Image

from densebox.datasets.transforms.formatting import PackSegInputs
from densebox.datasets.transforms.geometric import RandomFlip
from densebox.datasets.transforms.loading import LoadAnnotations, LoadImageFromFile
from densebox.datasets.transforms.seg_transforms import RandomCrop, RandomResize, SegPad
from densebox.registry import TRANSFORMS

# Colours that are extreme points of their convex hull (6 axis points and one corner around
# grey): a bilinear blend of two or more of them never equals one of them, so an image
# pixel that still has a palette colour exactly was sampled from that class only.
PALETTE = {0: (228, 128, 128), 1: (28, 128, 128), 2: (128, 228, 128), 3: (128, 28, 128),
           4: (128, 128, 228), 5: (128, 128, 28), 255: (186, 186, 186)}


def colour_coded(rng, shape=(60, 90), block=6):
    """Blocky random labels (0..5 and 255) and the image that paints them with PALETTE."""
    h, w = shape
    values = np.array(sorted(PALETTE))
    small = rng.choice(values, size=(-(-h // block), -(-w // block)))
    seg = np.kron(small, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)
    lut = np.zeros((256, 3), np.uint8)
    for k, c in PALETTE.items():
        lut[k] = c
    return lut[seg], seg


def check_agreement(img, seg, pad_hw=None):
    """Every pixel whose colour is a palette colour carries that label; returns the share."""
    checked = np.zeros(seg.shape, bool)
    for k, c in PALETTE.items():
        same = (img == np.array(c, np.uint8)).all(-1)
        assert (seg[same] == k).all(), f'label {k}: {np.unique(seg[same])}'
        checked |= same
    if pad_hw is not None:
        h, w = pad_hw
        assert (img[h:] == 0).all() and (img[:, w:] == 0).all()
        assert (seg[h:] == 255).all() and (seg[:, w:] == 255).all()
    return checked.mean()


def test_registered():
    for name in ('RandomResize', 'RandomCrop', 'SegPad'):
        assert TRANSFORMS.get(name) is not None


@pytest.mark.parametrize('ratio', [0.5, 1.3, 2.0])
def test_random_resize_keep_ratio(ratio):
    img = np.zeros((100, 250, 3), np.uint8)
    seg = np.zeros((100, 250), np.uint8)
    out = RandomResize(scale=(2048, 1024), ratio_range=(ratio, ratio))(
        dict(img=img, gt_seg_map=seg, scale_factor=(2.0, 0.5)))
    long_edge, short_edge = int(2048 * ratio), int(1024 * ratio)
    factor = min(long_edge / 250, short_edge / 100)
    expect = (int(100 * factor + 0.5), int(250 * factor + 0.5))
    assert out['img'].shape[:2] == expect == out['gt_seg_map'].shape == out['img_shape']
    assert max(expect) <= long_edge + 1 and min(expect) <= short_edge + 1
    # cumulative scale factor (w, h) relative to the loaded image
    assert out['scale_factor'] == pytest.approx((2.0 * expect[1] / 250, 0.5 * expect[0] / 100))


def test_random_resize_ratio_is_random_in_range():
    np.random.seed(0)
    sizes = []
    for _ in range(30):
        out = RandomResize(scale=(200, 100), ratio_range=(0.5, 2.0))(
            dict(img=np.zeros((50, 100, 3), np.uint8)))
        sizes.append(out['img_shape'][1])
    assert 100 <= min(sizes) < 150 and 300 < max(sizes) <= 400 and len(set(sizes)) > 10


def test_random_resize_without_keep_ratio_and_errors():
    out = RandomResize(scale=[(40, 30), (40, 30)], keep_ratio=False)(
        dict(img=np.zeros((10, 10, 3), np.uint8)))
    assert out['img_shape'] == (30, 40)
    with pytest.raises(ValueError, match='scale'):
        RandomResize(scale=(2048, 1024))             # neither a ratio range nor two bounds


def test_random_crop_sizes_and_image_follow_mask():
    rows, cols = np.mgrid[:50, :70]
    img = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    seg = (rows * 3 + cols).astype(np.int64) % 7        # a function of the position
    np.random.seed(1)
    for _ in range(10):
        out = RandomCrop(crop_size=(20, 30))(dict(img=img.copy(), gt_seg_map=seg.copy()))
        assert out['img'].shape == (20, 30, 3) and out['img_shape'] == (20, 30)
        r, c = out['img'][..., 0].astype(np.int64), out['img'][..., 1].astype(np.int64)
        np.testing.assert_array_equal(out['gt_seg_map'], (r * 3 + c) % 7)
    # an image smaller than the crop keeps its size along that side
    out = RandomCrop(crop_size=(80, 30))(dict(img=img.copy(), gt_seg_map=seg.copy()))
    assert out['img'].shape[:2] == (50, 30) == out['gt_seg_map'].shape


def crop_windows(monkeypatch):
    """Record the windows RandomCrop draws."""
    drawn = []
    original = RandomCrop._random_window

    def record(self, img_hw):
        window = original(self, img_hw)
        drawn.append(window)
        return window
    monkeypatch.setattr(RandomCrop, '_random_window', record)
    return drawn


def share_ok(seg, ratio, ignore=255):
    values, counts = np.unique(seg[seg != ignore], return_counts=True)
    return len(values) > 1 and counts.max() / counts.sum() < ratio


def test_random_crop_cat_max_ratio(monkeypatch):
    # left half class 0, right half class 1, a band of ignore; 20x20 crops balance only
    # when they straddle the middle.
    seg = np.zeros((40, 40), np.uint8)
    seg[:, 20:] = 1
    seg[:5] = 255
    img = np.zeros((40, 40, 3), np.uint8)
    drawn = crop_windows(monkeypatch)
    np.random.seed(0)
    n_ok = 0
    for _ in range(40):
        drawn.clear()
        out = RandomCrop((20, 20), cat_max_ratio=0.75)(dict(img=img, gt_seg_map=seg))
        y1, y2, x1, x2 = drawn[-1]
        np.testing.assert_array_equal(out['gt_seg_map'], seg[y1:y2, x1:x2])
        flags = [share_ok(seg[a:b, c:d], 0.75) for a, b, c, d in drawn]
        # the first balanced window is taken; otherwise 10 tries and the last one
        assert flags.count(True) <= 1 and (flags[-1] or len(drawn) == 10)
        n_ok += flags[-1]
    assert n_ok >= 36
    # without the rule, one window only
    drawn.clear()
    RandomCrop((20, 20))(dict(img=img, gt_seg_map=seg))
    assert len(drawn) == 1
    # a one-class map can never satisfy it: exactly 10 tries
    drawn.clear()
    RandomCrop((20, 20), cat_max_ratio=0.75)(dict(img=img, gt_seg_map=np.zeros_like(seg)))
    assert len(drawn) == 10


def test_seg_pad():
    img = np.full((5, 7, 3), 9, np.uint8)
    seg = np.ones((5, 7), np.uint8)
    out = SegPad(size=(8, 10), pad_val=0, seg_pad_val=255)(
        dict(img=img, gt_seg_map=seg, img_shape=(5, 7)))
    assert out['img'].shape == (8, 10, 3) and out['pad_shape'] == (8, 10)
    assert out['img_shape'] == (5, 7)
    assert (out['img'][:5, :7] == 9).all() and out['img'][5:].sum() == 0
    assert (out['gt_seg_map'][:5, :7] == 1).all() and (out['gt_seg_map'][:, 7:] == 255).all()
    out = SegPad(size_divisor=4)(dict(img=img, gt_seg_map=seg))
    assert out['img'].shape[:2] == (8, 8) == out['gt_seg_map'].shape
    with pytest.raises(ValueError, match='larger'):
        SegPad(size=(4, 4))(dict(img=img))
    with pytest.raises(ValueError, match='exactly one'):
        SegPad()


@pytest.mark.parametrize('seed', range(6))
def test_masks_follow_images_through_the_train_pipeline(seed):
    rng = np.random.default_rng(seed)
    img, seg = colour_coded(rng)
    pipeline = Compose([
        RandomResize(scale=(90, 60), ratio_range=(0.5, 2.0)),
        RandomCrop(crop_size=(48, 64), cat_max_ratio=0.75),
        RandomFlip(prob=0.5),
        SegPad(size=(48, 64), pad_val=0, seg_pad_val=255),
    ])
    np.random.seed(seed)
    out = pipeline(dict(img=img, gt_seg_map=seg, img_shape=seg.shape))
    assert out['img'].shape[:2] == out['gt_seg_map'].shape == (48, 64)
    share = check_agreement(out['img'], out['gt_seg_map'], pad_hw=out['img_shape'])
    assert share > 0.4     # most pixels are inside a block and were checked


def test_masks_follow_images_from_files_to_packed_tensors(tmp_path):
    rng = np.random.default_rng(7)
    img, seg = colour_coded(rng, shape=(60, 90))
    Image.fromarray(img).save(tmp_path / 'x.png')           # lossless: colours stay exact
    Image.fromarray(seg).save(tmp_path / 'x_seg.png')
    pipeline = Compose([
        LoadImageFromFile(),
        LoadAnnotations(with_bbox=False, with_label=False, with_seg=True),
        RandomResize(scale=(90, 60), ratio_range=(0.6, 0.6)),
        RandomCrop(crop_size=(40, 50), cat_max_ratio=0.75),   # crops the width only
        RandomFlip(prob=1.0),
        SegPad(size=(40, 50)),                                # pads the height
        PackSegInputs(),
    ])
    np.random.seed(0)
    out = pipeline(dict(img_path=str(tmp_path / 'x.png'),
                        seg_map_path=str(tmp_path / 'x_seg.png'), seg_fields=[]))
    sample = out['data_samples']
    packed_img = out['inputs'].permute(1, 2, 0).numpy()
    packed_seg = sample.gt_sem_seg.data[0].numpy()
    assert packed_img.shape[:2] == packed_seg.shape == (40, 50)
    assert sample.img_shape == (36, 50) and sample.flip          # 60x90 * 0.6 = 36x54
    assert sample.scale_factor == pytest.approx((0.6, 0.6))
    assert check_agreement(packed_img, packed_seg, pad_hw=sample.img_shape) > 0.3
