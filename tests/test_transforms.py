"""Transforms: boxes, labels, ignore flags and seg maps follow the image through every step."""
import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from PIL import Image
from torchvision.ops import box_iou

from densebox.datasets.transforms import (Albu, Expand, LoadAnnotations, LoadImageFromFile,
                                          MinIoURandomCrop, PackDetInputs, PackSegInputs,
                                          PhotoMetricDistortion, RandomFlip, Resize)
from densebox.datasets.transforms.photometric import scale_saturation
from densebox.structures import DetDataSample, SegDataSample

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
                    [0, 255, 255], [255, 128, 0], [128, 0, 255]], np.uint8)
MEAN = (123.675, 116.28, 103.53)


def make_scene(rng: np.random.Generator, grid=(4, 2)) -> dict:
    """Black image with up to grid[0] * grid[1] (<= 8) non-overlapping filled boxes, one per
    grid cell; box i has colour COLOURS[label], seg value label + 1, ignore flag label % 2."""
    h, w = int(rng.integers(120, 260)), int(rng.integers(120, 260))
    img = np.zeros((h, w, 3), np.uint8)
    seg = np.zeros((h, w), np.uint8)
    boxes, labels = [], []
    cell_w, cell_h = w // grid[0], h // grid[1]
    num_cells = grid[0] * grid[1]
    cells = rng.permutation(num_cells)[:int(rng.integers(1, num_cells + 1))]
    for label, cell in enumerate(cells):
        cx0, cy0 = (cell % grid[0]) * cell_w, (cell // grid[0]) * cell_h
        bw, bh = int(rng.integers(8, cell_w - 2)), int(rng.integers(8, cell_h - 2))
        x0 = cx0 + int(rng.integers(1, cell_w - bw))
        y0 = cy0 + int(rng.integers(1, cell_h - bh))
        img[y0:y0 + bh, x0:x0 + bw] = COLOURS[label]
        seg[y0:y0 + bh, x0:x0 + bw] = label + 1
        boxes.append([x0, y0, x0 + bw, y0 + bh])
        labels.append(label)
    labels = np.array(labels, np.int64)
    return dict(img=img, img_shape=(h, w), ori_shape=(h, w), gt_seg_map=seg,
                gt_bboxes=np.array(boxes, np.float32), gt_bboxes_labels=labels,
                gt_ignore_flags=labels % 2 == 1)


def check_scene(results: dict, colours=COLOURS, tol: int = 0) -> int:
    """Boxes valid and inside the image, flags attached, centre pixel = the box's colour.

    Returns the number of boxes whose centre pixel was checked (boxes >= 4 px on both sides).
    """
    img, boxes = results['img'], results['gt_bboxes']
    labels, flags = results['gt_bboxes_labels'], results['gt_ignore_flags']
    h, w = img.shape[:2]
    assert tuple(results['img_shape']) == (h, w)
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) == (len(flags), 4)
    assert labels.dtype == np.int64 and flags.dtype == bool
    np.testing.assert_array_equal(flags, labels % 2 == 1)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
    checked = 0
    for box, label in zip(boxes, labels):
        if min(box[2] - box[0], box[3] - box[1]) < 4:
            continue
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        diff = np.abs(img[cy, cx].astype(int) - colours[label].astype(int)).max()
        assert diff <= tol, (box, label, img[cy, cx], colours[label])
        if results.get('gt_seg_map') is not None:
            assert results['gt_seg_map'][cy, cx] == label + 1
        checked += 1
    return checked


def coordinate_image(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 image; pixel (y, x) holds (x % 256, y % 256, x // 256 * 16 + y // 256)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx % 256, yy % 256, (xx // 256) * 16 + yy // 256], -1).astype(np.uint8)


def decode_xy(pixel: np.ndarray):
    return int(pixel[0]) + 256 * (int(pixel[2]) // 16), int(pixel[1]) + 256 * (int(pixel[2]) % 16)


# ----------------------------------------------------------------------------- geometric
def test_expand_moves_boxes_with_image():
    checked = 0
    expand = Expand(mean=(1, 2, 3), ratio_range=(1, 4), prob=1.0)
    for seed in range(25):
        np.random.seed(seed)
        res = make_scene(np.random.default_rng(seed))
        h, w = res['img_shape']
        out = expand(res)
        nh, nw = out['img'].shape[:2]
        assert nh >= h and nw >= w and nh <= 4 * h and nw <= 4 * w
        # the canvas outside the pasted image is the mean colour and ignore in the seg map
        assert (out['img'] == [1, 2, 3]).all(-1).sum() == nh * nw - h * w
        assert (out['gt_seg_map'] == 255).sum() == nh * nw - h * w
        checked += check_scene(out)
    assert checked > 50


def test_expand_probability_zero_is_identity():
    res = make_scene(np.random.default_rng(0))
    img = res['img'].copy()
    out = Expand(prob=0.0)(res)
    np.testing.assert_array_equal(out['img'], img)


def test_min_iou_crop_follows_boxes_and_satisfies_constraint():
    crop = MinIoURandomCrop()
    checked = cropped = 0
    for seed in range(60):
        np.random.seed(seed)
        res = make_scene(np.random.default_rng(seed))
        out = crop(dict(res, img=res['img'].copy()))
        checked += check_scene(out)
        cropped += out['img'].shape[:2] != res['img'].shape[:2]
    assert checked > 100 and cropped > 25


@pytest.mark.parametrize('min_iou,grid', [(0.1, (2, 1)), (0.3, (2, 1)), (0.7, (1, 1))])
def test_min_iou_crop_patch_against_oracle(min_iou, grid):
    """Recover the patch from a coordinate-coded image and check the kept boxes and the IoU
    constraint with torchvision's box_iou."""
    crop = MinIoURandomCrop(min_ious=(min_iou, ))
    crop.thresholds = np.array([min_iou])  # drop the unconstrained sampler
    n_cropped = 0
    for seed in range(60):
        np.random.seed(seed)
        res = make_scene(np.random.default_rng(seed), grid=grid)
        h, w = res['img_shape']
        boxes = res['gt_bboxes'].copy()
        labels = res['gt_bboxes_labels'].copy()
        out = crop(dict(res, img=coordinate_image(h, w)))
        ph, pw = out['img'].shape[:2]
        if (ph, pw) == (h, w):
            continue
        n_cropped += 1
        x0, y0 = decode_xy(out['img'][0, 0])
        assert decode_xy(out['img'][-1, -1]) == (x0 + pw - 1, y0 + ph - 1)
        assert 0.5 <= ph / pw <= 2.0 and pw >= 0.3 * w - 1 and ph >= 0.3 * h - 1
        patch = np.array([x0, y0, x0 + pw, y0 + ph], np.float32)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = ((centres > patch[:2]) & (centres < patch[2:])).all(1)
        iou = box_iou(torch.from_numpy(patch[None]), torch.from_numpy(boxes))[0].numpy()
        assert (iou[inside] >= min_iou - 1e-6).any()
        expected = boxes[inside] - patch[[0, 1, 0, 1]]
        expected[:, 0::2] = expected[:, 0::2].clip(0, pw)
        expected[:, 1::2] = expected[:, 1::2].clip(0, ph)
        keep = ((expected[:, 2:] - expected[:, :2]) >= 1).all(1)
        np.testing.assert_allclose(out['gt_bboxes'], expected[keep], atol=1e-4)
        np.testing.assert_array_equal(out['gt_bboxes_labels'], labels[inside][keep])
    assert n_cropped >= 5


def test_min_iou_crop_without_boxes_keeps_image():
    res = dict(img=np.zeros((50, 60, 3), np.uint8), img_shape=(50, 60),
               gt_bboxes=np.zeros((0, 4), np.float32), gt_bboxes_labels=np.zeros(0, np.int64),
               gt_ignore_flags=np.zeros(0, bool))
    for seed in range(10):
        np.random.seed(seed)
        assert MinIoURandomCrop()(dict(res))['img'].shape == (50, 60, 3)


def test_resize_warp_and_keep_ratio():
    res = make_scene(np.random.default_rng(3))
    h, w = res['img_shape']
    boxes = res['gt_bboxes'].copy()
    out = Resize(scale=(300, 200))(dict(res))
    assert out['img'].shape == (200, 300, 3) and out['img_shape'] == (200, 300)
    sx, sy = 300 / w, 200 / h
    assert out['scale_factor'] == pytest.approx((sx, sy))
    np.testing.assert_allclose(out['gt_bboxes'], boxes * [sx, sy, sx, sy], rtol=1e-5)
    assert check_scene(out) > 0
    assert set(np.unique(out['gt_seg_map'])) <= set(np.unique(res['gt_seg_map']))
    # cumulative scale factor over a second resize
    out2 = Resize(scale=(150, 100))(dict(out))
    assert out2['scale_factor'] == pytest.approx((150 / w, 100 / h))

    res = dict(img=np.zeros((100, 400, 3), np.uint8), img_shape=(100, 400))
    out = Resize(scale=(1333, 800), keep_ratio=True)(res)
    assert out['img_shape'] == (333, 1333) and out['scale_factor'] == pytest.approx(
        (1333 / 400, 333 / 100))
    res = dict(img=np.zeros((300, 200, 3), np.uint8), img_shape=(300, 200))
    assert Resize(scale=(1333, 800), keep_ratio=True)(res)['img_shape'] == (1200, 800)


def test_resize_clips_and_drops_boxes_outside():
    res = dict(img=np.zeros((100, 100, 3), np.uint8), img_shape=(100, 100),
               gt_bboxes=np.array([[-10, 10, 50, 120], [120, 0, 150, 50]], np.float32),
               gt_bboxes_labels=np.array([0, 1]), gt_ignore_flags=np.array([False, True]))
    out = Resize(scale=(50, 50))(res)
    np.testing.assert_allclose(out['gt_bboxes'], [[0, 5, 25, 50]])
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False])


def test_random_flip_against_numpy():
    res = make_scene(np.random.default_rng(4))
    img, seg = res['img'].copy(), res['gt_seg_map'].copy()
    w = img.shape[1]
    out = RandomFlip(prob=1.0)(dict(res))
    assert out['flip'] is True and out['flip_direction'] == 'horizontal'
    np.testing.assert_array_equal(out['img'], img[:, ::-1])
    np.testing.assert_array_equal(out['gt_seg_map'], seg[:, ::-1])
    assert out['img'].flags['C_CONTIGUOUS']
    expected = res['gt_bboxes'][:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [w, 0, w, 0]
    np.testing.assert_allclose(out['gt_bboxes'], expected)
    check_scene(out)
    out = RandomFlip(prob=0.0)(make_scene(np.random.default_rng(4)))
    assert out['flip'] is False and out['flip_direction'] is None
    out = RandomFlip(prob=1.0, direction='vertical')(make_scene(np.random.default_rng(5)))
    check_scene(out)
    assert out['gt_seg_map'].flags['C_CONTIGUOUS']


@pytest.mark.parametrize('kwargs,message', [
    (dict(direction='diag'), r"direction must be .*got 'diag'"),
    (dict(prob=2), r'prob=2 for'),
    (dict(prob=None), r'prob=None for'),
    (dict(prob=[0.3, 0.3], direction='horizontal'), r'one per direction'),
])
def test_random_flip_names_a_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomFlip(**kwargs)


# ----------------------------------------------------------------------------- photometric
class _Record(BaseTransform):
    """Test helper: remember the box colours right after the photometric step."""

    def transform(self, results):
        boxes = results['gt_bboxes']
        centres = ((boxes[:, :2] + boxes[:, 2:]) / 2).astype(int)
        colours = np.zeros_like(COLOURS)
        colours[results['gt_bboxes_labels']] = results['img'][centres[:, 1], centres[:, 0]]
        results['_colours'] = colours
        return results


def test_full_ssd_pipeline_keeps_boxes_on_their_pixels():
    pipeline = Compose([PhotoMetricDistortion(), _Record(), Expand(mean=MEAN, ratio_range=(1, 4)),
                        MinIoURandomCrop(), Resize(scale=(300, 300)), RandomFlip(prob=0.5)])
    checked = 0
    for seed in range(40):
        np.random.seed(seed)
        out = pipeline(make_scene(np.random.default_rng(seed)))
        assert out['img'].shape == (300, 300, 3) and out['img'].dtype == np.uint8
        # bilinear resize of a uniform region is exact up to rounding
        checked += check_scene(out, colours=out['_colours'], tol=1)
    assert checked > 60


def _constant(colour, h=8, w=8):
    return dict(img=np.full((h, w, 3), colour, np.uint8), img_shape=(h, w))


def test_photometric_brightness_range():
    t = PhotoMetricDistortion(brightness_delta=32, contrast_range=(1, 1), saturation_range=(1, 1),
                              hue_delta=0, prob=1.0)
    deltas = []
    for seed in range(40):
        np.random.seed(seed)
        out = t(_constant(100))['img'].astype(int)
        assert (out == out[0, 0]).all()
        deltas.append(out[0, 0, 0] - 100)
    deltas = np.array(deltas)
    assert deltas.min() >= -32 and deltas.max() <= 32 and deltas.std() > 8


def test_photometric_contrast_range():
    t = PhotoMetricDistortion(brightness_delta=0,
                              contrast_range=(0.5, 1.5),
                              saturation_range=(1, 1),
                              hue_delta=0,
                              prob=1.0)
    ratios = []
    for seed in range(40):
        np.random.seed(seed)
        ratios.append(t(_constant(100))['img'][0, 0, 0] / 100)
    ratios = np.array(ratios)
    assert ratios.min() >= 0.5 - 0.01 and ratios.max() <= 1.5 + 0.01 and ratios.std() > 0.15


def test_photometric_hue_and_saturation():
    hue_t = PhotoMetricDistortion(brightness_delta=0,
                                  contrast_range=(1, 1),
                                  saturation_range=(1, 1),
                                  hue_delta=18,
                                  prob=1.0)
    base = _constant((200, 60, 60))
    base_h = cv2.cvtColor(base['img'], cv2.COLOR_RGB2HSV_FULL)[0, 0, 0].astype(int)  # 0..255
    shifts = []
    for seed in range(40):
        np.random.seed(seed)
        out = hue_t(dict(base, img=base['img'].copy()))['img']
        hue = cv2.cvtColor(out, cv2.COLOR_RGB2HSV_FULL)[0, 0, 0].astype(int)
        shifts.append(((hue - base_h + 128) % 256 - 128) * 360 / 256)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 18 + 3 and shifts.std() > 4

    sat_t = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1),
                                  saturation_range=(0.5, 1.5), hue_delta=0, prob=1.0)
    grey = _constant(90)
    np.random.seed(0)
    np.testing.assert_array_equal(sat_t(dict(grey))['img'], grey['img'])  # grey has no saturation
    spread = []
    for seed in range(20):
        np.random.seed(seed)
        out = sat_t(dict(base, img=base['img'].copy()))['img'][0, 0].astype(int)
        spread.append(out.max() - out.min())
    assert min(spread) < 140 < max(spread)


def _hsv_saturation_reference(img, factor):
    """The plain way: OpenCV RGB -> HSV (float), S times ``factor`` clipped to 1, back."""
    hsv = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 1)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('factor', [0.0, 0.5, 0.8, 1.0, 1.25, 1.5, 4.0])
def test_hsv_saturation_matches_an_opencv_hsv_round_trip(factor):
    rng = np.random.default_rng(int(factor * 100))
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    img[:6] = img[:6, :, :1]          # grey rows: no saturation to scale
    img[6:12, :, 2] = 0               # fully saturated rows: S = 1 already
    out = scale_saturation(img, factor)
    ref = _hsv_saturation_reference(img, factor)
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.4  # float error of the round trip at .5 ties
    np.testing.assert_array_equal(out[:6], img[:6])
    if factor >= 1:
        np.testing.assert_array_equal(out[6:12], img[6:12])  # S stays clipped at 1


def test_photometric_saturation_is_hsv_not_a_grey_blend():
    """SSD's saturation step (Caffe, mmdetection) scales S in HSV at fixed hue and value:
    pure red at half saturation is (255, 128, 128). A blend with the grey (luma) image, as
    ColorJitter does, would give about (166, 38, 38)."""
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = 255
    half = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1),
                                 saturation_range=(0.5, 0.5), hue_delta=0, prob=1.0)
    np.random.seed(0)
    out = half(dict(img=img.copy(), img_shape=(4, 6)))['img']
    assert (out == np.array([255, 128, 128], np.uint8)).all()
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for factor in (0.7, 1.4):
        t = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1),
                                  saturation_range=(factor, factor), hue_delta=0, prob=1.0)
        for seed in range(3):  # either of the two step orders
            np.random.seed(seed)
            got = t(dict(img=scene.copy(), img_shape=(20, 30)))['img']
            np.testing.assert_array_equal(got, scale_saturation(scene, factor))


def test_photometric_follows_numpy_seed_and_leaves_boxes():
    t = PhotoMetricDistortion()
    res = make_scene(np.random.default_rng(0))

    def run(seed):
        np.random.seed(seed)
        return t(dict(res, img=res['img'].copy(), gt_bboxes=res['gt_bboxes'].copy()))

    np.testing.assert_array_equal(run(1)['img'], run(1)['img'])
    outs = [run(seed) for seed in range(2, 8)]
    assert len({o['img'].tobytes() for o in outs}) >= 4
    for out in outs:
        np.testing.assert_array_equal(out['gt_bboxes'], res['gt_bboxes'])
        assert out['img'].shape == res['img'].shape and out['img'].dtype == np.uint8


# ----------------------------------------------------------------------------- albumentations
def test_albu_flip_matches_random_flip():
    res = make_scene(np.random.default_rng(7))
    ours = RandomFlip(prob=1.0)(dict(res, img=res['img'].copy()))
    albu = Albu([dict(type='HorizontalFlip', p=1.0)])(dict(res, img=res['img'].copy()))
    np.testing.assert_array_equal(albu['img'], ours['img'])
    np.testing.assert_allclose(albu['gt_bboxes'], ours['gt_bboxes'], atol=1e-3)
    np.testing.assert_array_equal(albu['gt_seg_map'], ours['gt_seg_map'])
    np.testing.assert_array_equal(albu['gt_bboxes_labels'], res['gt_bboxes_labels'])


def test_albu_crop_drops_labels_and_flags_with_boxes():
    res = dict(img=np.zeros((100, 100, 3), np.uint8), img_shape=(100, 100),
               gt_bboxes=np.array([[5, 5, 20, 20], [60, 60, 90, 95], [40, 10, 70, 30]], np.float32),
               gt_bboxes_labels=np.array([4, 5, 6]), gt_ignore_flags=np.array([True, False, True]))
    out = Albu([dict(type='Crop', x_min=50, y_min=0, x_max=100, y_max=100)])(res)
    assert out['img_shape'] == (100, 50)
    np.testing.assert_allclose(out['gt_bboxes'], [[10, 60, 40, 95], [0, 10, 20, 30]], atol=1e-3)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [5, 6])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False, True])
    with pytest.raises(KeyError, match='NoSuchTransform'):
        Albu([dict(type='NoSuchTransform')])


# ----------------------------------------------------------------------------- loading
def test_load_image_applies_exif_orientation(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
    arr[:8, :8] = 255  # bright corner to make rotation visible through JPEG noise
    for orientation in (3, 6, 8):
        pil = Image.fromarray(arr)
        exif = pil.getexif()
        exif[0x0112] = orientation
        path = str(tmp_path / f'o{orientation}.jpg')
        pil.save(path, exif=exif.tobytes(), quality=95)
        out = LoadImageFromFile()(dict(img_path=path))
        with Image.open(path) as ref:
            from PIL import ImageOps
            expected = np.asarray(ImageOps.exif_transpose(ref).convert('RGB')).astype(int)
        assert out['img'].shape == expected.shape and out['img'].dtype == np.uint8
        assert out['img_shape'] == out['ori_shape'] == expected.shape[:2]
        assert np.abs(out['img'].astype(int) - expected).mean() < 2  # decoder rounding only
        if orientation in (6, 8):
            assert out['img'].shape[:2] == (40, 24)


def test_load_grey_rgba_and_rgb_order(tmp_path):
    grey = (np.arange(30 * 20) % 256).astype(np.uint8).reshape(30, 20)
    Image.fromarray(grey).save(tmp_path / 'g.png')
    out = LoadImageFromFile()(dict(img_path=str(tmp_path / 'g.png')))['img']
    assert out.shape == (30, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)

    rgba = np.random.default_rng(1).integers(0, 256, (12, 16, 4)).astype(np.uint8)
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    out = LoadImageFromFile()(dict(img_path=str(tmp_path / 'a.png')))['img']
    np.testing.assert_array_equal(out, rgba[..., :3])  # RGB order, alpha dropped, not blended

    out = LoadImageFromFile()(dict(img_path=None, img=grey))
    assert out['img'].shape == (30, 20, 3) and out['ori_shape'] == (30, 20)


def test_load_image_errors_name_the_path(tmp_path):
    missing = str(tmp_path / 'nope.jpg')
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        LoadImageFromFile()(dict(img_path=missing))
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'this is not an image')
    with pytest.raises(ValueError, match='bad.jpg'):
        LoadImageFromFile()(dict(img_path=str(bad)))


def test_load_annotations(tmp_path):
    res = dict(img_path='x.jpg', instances=[
        dict(bbox=[1, 2, 3, 4], bbox_label=2, ignore_flag=0),
        dict(bbox=[5, 6, 7.5, 8], bbox_label=0, ignore_flag=1)])
    out = LoadAnnotations()(res)
    assert out['gt_bboxes'].dtype == np.float32 and out['gt_bboxes'].shape == (2, 4)
    np.testing.assert_array_equal(out['gt_bboxes'][1], [5, 6, 7.5, 8])
    assert out['gt_bboxes_labels'].dtype == np.int64
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [2, 0])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False, True])
    empty = LoadAnnotations()(dict(img_path='y.jpg', instances=[]))
    assert empty['gt_bboxes'].shape == (0, 4) and empty['gt_bboxes_labels'].shape == (0, )
    with pytest.raises(ValueError, match='z.jpg'):
        LoadAnnotations()(dict(img_path='z.jpg', instances=[dict(bbox=[1, 2, 3], bbox_label=0)]))

    # palette PNGs give class indices, not colours; reduce_zero_label maps 0 -> 255
    seg = np.array([[0, 1, 2], [3, 255, 1]], np.uint8)
    pil = Image.fromarray(seg, 'P')
    pil.putpalette(list(np.random.default_rng(0).integers(0, 256, 768)))
    pil.save(tmp_path / 's.png')
    out = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True)(
        dict(seg_map_path=str(tmp_path / 's.png')))
    np.testing.assert_array_equal(out['gt_seg_map'], seg)
    assert out['gt_seg_map'].dtype == np.uint8
    out = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True, reduce_zero_label=True)(
        dict(seg_map_path=str(tmp_path / 's.png')))
    np.testing.assert_array_equal(out['gt_seg_map'], [[255, 0, 1], [2, 255, 0]])


# ----------------------------------------------------------------------------- packing
def test_pack_det_inputs():
    res = make_scene(np.random.default_rng(2))
    res.update(img_id=7, img_path='a.jpg', scale_factor=(2.0, 3.0), flip=True,
               flip_direction='horizontal')
    out = PackDetInputs()(res)
    inputs, sample = out['inputs'], out['data_samples']
    h, w = res['img_shape']
    assert isinstance(inputs, torch.Tensor) and inputs.dtype == torch.uint8
    assert inputs.shape == (3, h, w) and inputs.is_contiguous()
    torch.testing.assert_close(inputs.permute(1, 2, 0), torch.from_numpy(res['img']))
    assert isinstance(sample, DetDataSample)
    flags = res['gt_ignore_flags']
    gt, ign = sample.gt_instances, sample.ignored_instances
    assert gt.bboxes.dtype == torch.float32 and gt.labels.dtype == torch.int64
    torch.testing.assert_close(gt.bboxes, torch.from_numpy(res['gt_bboxes'][~flags]))
    torch.testing.assert_close(ign.labels, torch.from_numpy(res['gt_bboxes_labels'][flags]))
    assert len(gt) + len(ign) == len(flags)
    for key in ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                'flip_direction'):
        assert sample.metainfo[key] == res[key]

    bare = PackDetInputs()(dict(img=np.zeros((5, 6, 3), np.uint8), img_shape=(5, 6), img_id=1))
    s = bare['data_samples']
    assert s.gt_instances.bboxes.shape == (0, 4) and s.gt_instances.labels.shape == (0, )
    assert s.ignored_instances.bboxes.shape == (0, 4)
    assert s.metainfo['scale_factor'] == (1.0, 1.0) and s.metainfo['flip'] is False


def test_pack_seg_inputs():
    seg = np.random.default_rng(0).integers(0, 5, (6, 7)).astype(np.uint8)
    out = PackSegInputs()(dict(img=np.zeros((6, 7, 3), np.uint8), img_shape=(6, 7),
                               ori_shape=(6, 7), gt_seg_map=seg, img_path='a.jpg'))
    sample = out['data_samples']
    assert isinstance(sample, SegDataSample)
    assert sample.gt_sem_seg.data.shape == (1, 6, 7) and sample.gt_sem_seg.data.dtype == torch.int64
    np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), seg)
    assert out['inputs'].shape == (3, 6, 7) and sample.metainfo['img_path'] == 'a.jpg'


def test_transforms_build_from_registry():
    init_default_scope('densebox')
    pipeline = Compose([dict(type='Expand', prob=1.0), dict(type='MinIoURandomCrop'),
                        dict(type='Resize', scale=(64, 64)), dict(type='RandomFlip', prob=0.5),
                        dict(type='PhotoMetricDistortion'), dict(type='PackDetInputs')])
    np.random.seed(0)
    out = pipeline(make_scene(np.random.default_rng(0)))
    assert out['inputs'].shape == (3, 64, 64)
