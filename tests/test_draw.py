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
    tag = out[29:40, 20:60]
    assert (tag == (0, 255, 0)).all(-1).mean() > 0.3
    assert (tag != (0, 255, 0)).any(-1).any()  # the text


def test_draw_det_without_scores_and_on_small_and_large_images():
    for h, w in ((60, 80), (1024, 2048)):
        img = grey(h, w)
        box = np.array([[w * 0.2, h * 0.3, w * 0.7, h * 0.9]])
        out = draw_det(img, box, np.array([0]), None, NAMES)
        colour = tuple(int(c) for c in get_palette(3)[0])
        assert tuple(out[int(h * 0.6), int(round(w * 0.2))]) == colour  # outline inside
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


def test_draw_seg_legend_beside_the_image_lists_present_classes():
    img = grey(240, 200)  # taller than wide: the legend goes to the right
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    seg = make_seg(240, 200)  # classes 0 and 2 present, 1 absent
    with_legend = draw_seg(img, seg, NAMES, palette, legend=True)
    without = draw_seg(img, seg, NAMES, palette, legend=False)
    assert with_legend.shape[0] == 240 and with_legend.shape[1] > 200
    np.testing.assert_array_equal(with_legend[:, :200], without)  # the image is not covered
    panel = with_legend[:, 200:]

    def has_pure(region, colour):
        return (region == colour).all(-1).sum() > 20  # a swatch, not a stray pixel

    assert has_pure(panel, (255, 0, 0)) and has_pure(panel, (0, 0, 255))
    assert not has_pure(panel, (0, 255, 0))  # absent class not listed
    assert (panel == 255).all(-1).mean() > 0.5 and (panel < 60).all(-1).any()  # dark text
    wide = draw_seg(grey(100, 300), make_seg(100, 300), NAMES, palette)
    assert wide.shape[1] == 300 and wide.shape[0] > 100  # below a wide image


def test_legend_inside_is_translucent_and_outlines_black_swatches():
    img = grey(240, 320, value=30)  # a dark image
    palette = [(0, 0, 0), (0, 255, 0), (255, 255, 255)]  # black and white classes
    seg = make_seg(240, 320)  # classes 0 (black) and 2 (white)
    out = draw_seg(img, seg, NAMES, palette, alpha=0.0, legend='inside')
    assert out.shape == img.shape
    corner = out[:40, :80]
    # the panel lightens the image but lets it through (not opaque, not darkened)
    assert 30 < np.median(corner) < 255
    # the black swatch sits on the light panel with a visible outline
    assert (corner == 0).all(-1).sum() > 10 and ((corner > 60) & (corner < 120)).all(-1).any()
    np.testing.assert_array_equal(out[100:], img[100:])  # away from the legend, untouched
    with pytest.raises(ValueError, match="legend must be"):
        draw_seg(img, seg, NAMES, palette, legend='left')


def test_style_follows_the_image_size_and_can_be_set():
    from densebox.visualization import draw_style
    small, mid, large = draw_style(80, 80), draw_style(300, 300), draw_style(1024, 2048)
    assert small.text_height == 10 and small.line_width == 1  # legible, not covering
    assert small.text_height < mid.text_height < large.text_height <= 40
    assert large.line_width >= 3
    assert draw_style(80, 80, line_width=4, font_size=20).line_width == 4
    assert draw_style(80, 80, line_width=4, font_size=20).text_height == 20


@pytest.mark.parametrize('h,w', [(80, 80), (120, 160), (1024, 2048)])
def test_tags_stay_inside_the_image_and_off_each_other(h, w):
    from densebox.visualization.draw import _tag_size, place_tag
    from densebox.visualization import draw_style
    style = draw_style(h, w)
    # five overlapping boxes, one at the top edge and one at the right edge
    boxes = np.array([[0, 0, w * .3, h * .2], [w * .1, h * .25, w * .55, h * .75],
                      [w * .12, h * .27, w * .5, h * .7], [w * .5, h * .25, w - 1, h - 1],
                      [w * .55, h * .3, w * .9, h * .9]]).round().astype(int)
    taken = []
    for box in boxes:
        tw, th, _, _ = _tag_size('triangle 0.87', style)
        rect = place_tag(box, tw, th, h, w, taken)
        assert 0 <= rect[0] and rect[2] <= w and 0 <= rect[1] and rect[3] <= h
        taken.append(rect)
    overlaps = sum(max(0, min(a[2], b[2]) - max(a[0], b[0])) *
                   max(0, min(a[3], b[3]) - max(a[1], b[1]))
                   for i, a in enumerate(taken) for b in taken[i + 1:])
    if h >= 120:
        assert overlaps == 0
    else:  # on 80 px five tags cannot all fit apart; they overlap little
        area = sum((r[2] - r[0]) * (r[3] - r[1]) for r in taken)
        assert overlaps < 0.2 * area
    out = draw_det(grey(h, w), boxes, [0, 1, 0, 2, 1], [0.9, 0.8, 0.7, 0.6, 0.5], NAMES)
    assert out.shape == (h, w, 3)


def test_one_palette_per_data_set_for_boxes_and_masks():
    from densebox.datasets.shapes import SHAPES_CLASSES
    from densebox.datasets.shapes_seg import ShapesSegDataset
    from densebox.datasets.voc import VOCDataset
    from densebox.datasets.voc_seg import VOCSegDataset
    from densebox.registry import DATASETS
    from densebox.setup_env import register_all_modules
    register_all_modules()
    for det_meta, seg_meta in (
            (VOCDataset._load_metainfo(), VOCSegDataset.METAINFO),
            (DATASETS.get('CocoDetDataset')._load_metainfo(dict(classes=SHAPES_CLASSES)),
             ShapesSegDataset.METAINFO)):
        seg_colour = dict(zip(seg_meta['classes'], map(tuple, seg_meta['palette'])))
        for name, colour in zip(det_meta['classes'], det_meta['palette']):
            assert tuple(colour) == seg_colour[name], name
    # the result objects fall back to the same colours when given no palette
    from densebox.apis import DetResult
    res = DetResult(np.zeros((0, 4)), [], [], SHAPES_CLASSES, shape=(10, 10))
    seg_colour = dict(zip(ShapesSegDataset.METAINFO['classes'], ShapesSegDataset.METAINFO['palette']))
    assert [tuple(c) for c in res.palette] == [tuple(seg_colour[n]) for n in SHAPES_CLASSES]


def test_side_by_side_sizes_and_titles():
    from densebox.visualization import side_by_side
    a, b = grey(100, 80, 10), grey(60, 120, 200)
    out = side_by_side([a, b], ['ground truth', 'prediction'], gap=4)
    strip = out.shape[0] - 100
    assert out.shape[1] == 80 + 4 + 120 and strip >= 10
    np.testing.assert_array_equal(out[strip:, :80], a)
    np.testing.assert_array_equal(out[strip:strip + 60, 84:], b)
    assert (out[:strip] < 100).any()  # the titles


def test_draw_seg_many_classes_legend_wraps_and_bad_input():
    names = [f'class_{i}' for i in range(40)]
    seg = np.arange(64 * 64).reshape(64, 64) % 40
    out = draw_seg(grey(64, 64), seg, names)
    assert out.shape[0] == 64 and out.shape[1] > 3 * 64  # 40 names in columns beside it
    assert draw_seg(grey(64, 64), seg, names, legend='inside').shape == (64, 64, 3)
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
