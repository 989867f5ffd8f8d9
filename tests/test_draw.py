"""Drawing boxes / masks, palettes and saving."""
import colorsys

import cv2
import numpy as np
import pytest
import torch

from densebox.visualization import draw_det, draw_seg, get_palette, resolve_palette, save_image

NAMES = ('person', 'car', 'dog')


def grey(h=120, w=160, value=90):
    return np.full((h, w, 3), value, np.uint8)


# ---------------------------------------------------------------- palette
def test_palette_is_deterministic_distinct_and_matches_colorsys():
    pal = get_palette(30)
    assert pal.shape == (30, 3) and pal.dtype == np.uint8
    np.testing.assert_array_equal(pal, get_palette(30))
    np.testing.assert_array_equal(get_palette(5), pal[:5])  # prefix-stable
    assert len({tuple(c) for c in pal.tolist()}) == 30
    dist = np.abs(pal[:, None].astype(int) - pal[None].astype(int)).sum(-1)
    assert dist[~np.eye(30, dtype=bool)].min() > 20  # no two colours look the same
    # the vectorised HSV conversion agrees with the standard library
    k = np.arange(30)
    h = (0.05 + k * 0.618033988749895) % 1.0
    s = np.array([0.85, 0.65, 1.0])[k % 3]
    v = np.array([0.95, 0.75, 0.6])[(k // 3) % 3]
    ref = np.round(np.array([colorsys.hsv_to_rgb(*x) for x in zip(h, s, v)]) * 255)
    np.testing.assert_array_equal(pal, ref.astype(np.uint8))


def test_resolve_palette():
    meta = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    np.testing.assert_array_equal(resolve_palette(meta, 3), np.array(meta, np.uint8))
    with pytest.raises(ValueError, match='3 colours but 4 classes'):
        resolve_palette(meta, 4)
    with pytest.raises(ValueError, match='0..255'):
        resolve_palette([(300, 0, 0)], 1)


# ---------------------------------------------------------------- draw_det
def test_draw_det_draws_box_edges_in_class_colour():
    img = grey()
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    boxes = torch.tensor([[20.0, 40.0, 100.0, 110.0], [110.0, 10.0, 150.0, 60.0]])
    out = draw_det(img, boxes, torch.tensor([1, 2]), torch.tensor([0.9, 0.1]), NAMES,
                   palette=palette, score_thr=0.3)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 90).all()  # input untouched
    # left, right and bottom edges of the kept box have its class colour
    assert tuple(out[80, 20]) == (0, 255, 0)
    assert tuple(out[80, 100]) == (0, 255, 0)
    assert tuple(out[110, 60]) == (0, 255, 0)
    # inside the box and far away nothing changed
    assert tuple(out[80, 60]) == (90, 90, 90)
    # the box under the score threshold is not drawn
    assert tuple(out[35, 110]) == (90, 90, 90) and tuple(out[35, 150]) == (90, 90, 90)
    # a tag (filled with the class colour, holding text) sits above the box
    tag = out[20:40, 20:60]
    assert (tag == (0, 255, 0)).all(-1).mean() > 0.3
    assert (tag != (0, 255, 0)).any(-1).any()  # the text


def test_draw_det_without_scores_and_on_small_and_large_images():
    for h, w in ((60, 80), (1024, 2048)):
        img = grey(h, w)
        box = np.array([[w * 0.2, h * 0.3, w * 0.7, h * 0.9]])
        out = draw_det(img, box, np.array([0]), None, NAMES)
        colour = tuple(int(c) for c in get_palette(3)[0])
        assert tuple(out[int(h * 0.6), int(w * 0.2)]) == colour
        changed = (out != img).any(-1)
        assert changed.any() and not changed[int(h * 0.6), int(w * 0.45)]
    # the large image gets thicker lines
    big = draw_det(grey(1024, 2048), np.array([[400, 300, 1400, 900]]), [0], None, NAMES)
    assert (big[600, 396:410] != 90).any(-1).sum() > 2


def test_draw_det_empty_and_bad_input():
    img = grey()
    np.testing.assert_array_equal(draw_det(img, np.zeros((0, 4)), np.zeros(0), np.zeros(0),
                                           NAMES), img)
    with pytest.raises(ValueError, match='RGB uint8'):
        draw_det(img.astype(np.float32), np.zeros((0, 4)), [], None, NAMES)
    with pytest.raises(ValueError, match='label 5'):
        draw_det(img, [[0, 0, 10, 10]], [5], None, NAMES)
    with pytest.raises(ValueError, match='2 boxes but 1 labels'):
        draw_det(img, [[0, 0, 10, 10], [1, 1, 5, 5]], [0], None, NAMES)


# ---------------------------------------------------------------- draw_seg
def make_seg(h=120, w=160):
    seg = np.zeros((h, w), np.int64)
    seg[:, w // 2:] = 2
    seg[h // 2:, :] = 255
    return seg


def test_draw_seg_blends_masks():
    img = grey()
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    seg = make_seg()
    out = draw_seg(img, seg, NAMES, palette, alpha=0.5, legend=False)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[10, 60], np.round([(90 + 255) / 2, 45, 45]))
    np.testing.assert_array_equal(out[10, 150], np.round([45, 45, (90 + 255) / 2]))
    np.testing.assert_array_equal(out[100:], img[100:])  # ignore_index untouched
    np.testing.assert_array_equal(draw_seg(img, seg, NAMES, palette, alpha=0.0, legend=False),
                                  img)


def test_draw_seg_legend_lists_present_classes():
    img = grey(240, 320)
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    seg = make_seg(240, 320)  # classes 0 and 2 present, 1 absent
    with_legend = draw_seg(img, seg, NAMES, palette, legend=True)
    without = draw_seg(img, seg, NAMES, palette, legend=False)
    corner = with_legend[:80, :160]

    def has_pure(region, colour):
        return (region == colour).all(-1).sum() > 20  # a swatch, not a stray pixel

    assert has_pure(corner, (255, 0, 0)) and has_pure(corner, (0, 0, 255))
    assert not has_pure(corner, (0, 255, 0))  # absent class not listed
    assert not has_pure(without[:80, :160], (255, 0, 0))  # blending never gives pure colours
    assert (corner == 255).all(-1).any()  # white label text
    # away from the legend nothing differs
    np.testing.assert_array_equal(with_legend[150:], without[150:])


def test_draw_seg_many_classes_legend_wraps_and_bad_input():
    names = [f'class_{i}' for i in range(40)]
    seg = np.arange(64 * 64).reshape(64, 64) % 40
    out = draw_seg(grey(64, 64), seg, names)
    assert out.shape == (64, 64, 3)
    with pytest.raises(ValueError, match='does not match'):
        draw_seg(grey(), np.zeros((10, 10), np.int64), NAMES)
    with pytest.raises(ValueError, match='outside'):
        draw_seg(grey(), np.full((120, 160), 7), NAMES)


# ---------------------------------------------------------------- save
def test_save_image_writes_rgb_as_bgr(tmp_path):
    img = grey(20, 30)
    img[..., 0] = 200  # red
    path = save_image(tmp_path / 'a' / 'b' / 'x.png', img)
    back = cv2.imread(path)  # BGR
    np.testing.assert_array_equal(back[..., ::-1], img)
    with pytest.raises(OSError, match='could not write'):
        save_image(tmp_path / 'x.unknownext', img)
