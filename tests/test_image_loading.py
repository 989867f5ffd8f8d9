"""Image files as a user has them: EXIF-rotated JPEGs with their COCO / VOC boxes, broken
files, 16-bit / grey / RGBA / 1x1 images, and seg masks with values outside the classes."""
import io
import json
import logging

import cv2
import numpy as np
import pytest
from mmengine.logging import MMLogger
from PIL import Image, ImageOps

from densebox.datasets import BaseSegDataset, CocoDetDataset, VOCDataset
from densebox.datasets.transforms import LoadAnnotations, LoadImageFromFile
from densebox.datasets.transforms import image_decode
from densebox.datasets.transforms.image_decode import (apply_exif_orientation, decode_rgb,
                                                       decode_stored_rgb)

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackDetInputs')]
RED = (255, 0, 0)


def jpeg_bytes(img, orientation=None, quality=95):
    pil = Image.fromarray(img)
    buf = io.BytesIO()
    if orientation is None:
        pil.save(buf, 'JPEG', quality=quality)
    else:
        exif = Image.Exif()
        exif[image_decode.EXIF_ORIENTATION_TAG] = orientation
        pil.save(buf, 'JPEG', quality=quality, exif=exif)
    return buf.getvalue()


def png_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, 'PNG')
    return buf.getvalue()


# --------------------------------------------------------------------------- EXIF
@pytest.mark.parametrize('orientation', range(1, 9))
def test_orientation_equals_pil_exif_transpose(orientation):
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (5, 7, 3)).astype(np.uint8)
    pil = Image.fromarray(stored)
    exif = pil.getexif()
    exif[image_decode.EXIF_ORIENTATION_TAG] = orientation
    buf = io.BytesIO()
    pil.save(buf, 'PNG', exif=exif)  # lossless, so pixels compare exactly
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    np.testing.assert_array_equal(apply_exif_orientation(stored, orientation), expected)
    np.testing.assert_array_equal(decode_rgb(buf.getvalue(), 'x.png'), expected)
    np.testing.assert_array_equal(decode_stored_rgb(buf.getvalue(), 'x.png'), stored)


def rotated_photo(tmp_path, name='photo.jpg'):
    """A camera JPEG stored as 96 x 64 (W x H) with EXIF orientation 6 (shown rotated 90
    degrees clockwise: 64 x 96). A red block sits at stored pixels x 60..80, y 10..30.

    Returns the path, the block's box in stored pixels and in the shown picture.
    """
    stored = np.full((64, 96, 3), 40, np.uint8)
    stored[10:30, 60:80] = RED
    path = tmp_path / name
    path.write_bytes(jpeg_bytes(stored, orientation=6))
    # rotating clockwise sends stored (x, y) to shown (H - 1 - y, x): the block lands at
    # shown x 64 - 30 .. 64 - 10, y 60 .. 80
    return str(path), [60, 10, 80, 30], [34, 60, 54, 80]


def red_fraction(img, box):
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    patch = img[y1 + 2:y2 - 2, x1 + 2:x2 - 2].astype(int)
    return float(((patch[..., 0] > 200) & (patch[..., 1] < 60)).mean())


def coco_for(tmp_path, file_name, width, height, box):
    x1, y1, x2, y2 = box
    data = dict(images=[dict(id=1, file_name=file_name, width=width, height=height)],
                categories=[dict(id=1, name='block')],
                annotations=[dict(id=1, image_id=1, category_id=1, iscrowd=0,
                                  bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1))])
    path = tmp_path / f'instances_{width}x{height}.json'
    path.write_text(json.dumps(data))
    return CocoDetDataset(ann_file=str(path), data_root=str(tmp_path),
                          metainfo=dict(classes=('block', )), pipeline=PIPELINE, test_mode=True)


def boxes_follow_the_image(ds):
    out = ds[0]
    img = out['inputs'].permute(1, 2, 0).numpy()
    box = out['data_samples'].gt_instances.bboxes[0].tolist()
    return img.shape[:2], red_fraction(img, box)


def test_coco_boxes_on_the_stored_pixels_keep_them(tmp_path):
    """The issue's case: COCO width / height and boxes of the stored 96 x 64 pixels. The
    rotation is not applied, so the image is 64 x 96 (H x W) and the box is on the block."""
    path, stored_box, _ = rotated_photo(tmp_path)
    shape, red = boxes_follow_the_image(coco_for(tmp_path, 'photo.jpg', 96, 64, stored_box))
    assert shape == (64, 96) and red > 0.95


def test_coco_boxes_on_the_rotated_picture_get_it(tmp_path):
    path, _, shown_box = rotated_photo(tmp_path)
    shape, red = boxes_follow_the_image(coco_for(tmp_path, 'photo.jpg', 64, 96, shown_box))
    assert shape == (96, 64) and red > 0.95


def test_size_mismatch_names_the_file_and_both_sizes(tmp_path):
    path, stored_box, _ = rotated_photo(tmp_path)
    ds = coco_for(tmp_path, 'photo.jpg', 100, 80, stored_box)
    with pytest.raises(ValueError) as err:
        ds[0]
    msg = str(err.value)
    assert 'photo.jpg' in msg and '100x80' in msg and '64x96' in msg and '96x64' in msg
    assert 'EXIF orientation 6' in msg


def test_fixed_policies_check_the_size_too(tmp_path):
    path, stored_box, shown_box = rotated_photo(tmp_path)
    stored = dict(img_path=path, height=64, width=96)
    shown = dict(img_path=path, height=96, width=64)
    assert LoadImageFromFile(exif_orientation='ignore')(dict(stored))['img'].shape == (64, 96, 3)
    assert LoadImageFromFile(exif_orientation='apply')(dict(shown))['img'].shape == (96, 64, 3)
    with pytest.raises(ValueError, match='photo.jpg'):
        LoadImageFromFile(exif_orientation='apply')(dict(stored))
    with pytest.raises(ValueError, match='photo.jpg'):
        LoadImageFromFile(exif_orientation='ignore')(dict(shown))
    with pytest.raises(ValueError, match='exif_orientation'):
        LoadImageFromFile(exif_orientation='rotate')
    # no stated size (inference): the picture as viewers show it
    assert LoadImageFromFile()(dict(img_path=path))['img'].shape == (96, 64, 3)


def test_keeping_the_stored_pixels_is_said_once(tmp_path):
    path, stored_box, _ = rotated_photo(tmp_path)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        loader = LoadImageFromFile()
        for _ in range(3):
            loader(dict(img_path=path, height=64, width=96))
    finally:
        logger.removeHandler(handler)
    said = [r for r in records if 'EXIF orientation is not applied' in r.getMessage()]
    assert len(said) == 1 and 'photo.jpg' in said[0].getMessage()


def write_voc_photo(tmp_path, size_xml, box):
    base = tmp_path / 'VOC2007'
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (base / sub).mkdir(parents=True, exist_ok=True)
    path, _, _ = rotated_photo(base / 'JPEGImages', '000001.jpg')
    xmin, ymin, xmax, ymax = box[0] + 1, box[1] + 1, box[2], box[3]  # VOC inclusive pixels
    (base / 'Annotations' / '000001.xml').write_text(
        f'<annotation>{size_xml}<object><name>cat</name><bndbox><xmin>{xmin}</xmin>'
        f'<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>'
        '</annotation>')
    (base / 'ImageSets' / 'Main' / 'test.txt').write_text('000001\n')
    return VOCDataset(data_root=str(tmp_path), ann_file='VOC2007/ImageSets/Main/test.txt',
                      metainfo=dict(classes=('cat', )), pipeline=PIPELINE, test_mode=True)


def size(w, h):
    return f'<size><width>{w}</width><height>{h}</height><depth>3</depth></size>'


def test_voc_boxes_follow_the_image(tmp_path):
    _, stored_box, shown_box = rotated_photo(tmp_path)
    cases = [(size(96, 64), stored_box, (64, 96)),   # drawn on the stored pixels
             (size(64, 96), shown_box, (96, 64)),    # drawn on the rotated picture
             ('', shown_box, (96, 64))]              # no <size>: the picture viewers show
    for k, (size_xml, box, expected_shape) in enumerate(cases):
        ds = write_voc_photo(tmp_path / str(k), size_xml, box)
        assert ds.get_data_info(0)['height'] == expected_shape[0]
        shape, red = boxes_follow_the_image(ds)
        assert shape == expected_shape and red > 0.95, k
    ds = write_voc_photo(tmp_path / 'bad', size(90, 90), stored_box)
    with pytest.raises(ValueError, match=r'000001.jpg.*90x90'):
        ds[0]


# --------------------------------------------------------------------------- broken files
def broken_files(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3)).astype(np.uint8)
    jpeg, png = jpeg_bytes(img), png_bytes(img)
    files = {'empty.jpg': b'', 'cut.jpg': jpeg[:len(jpeg) // 2], 'cut.png': png[:len(png) // 2],
             'notes.jpg': b'these are my notes, not an image\n'}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / 'folder.jpg').mkdir()
    return {name: str(tmp_path / name) for name in [*files, 'folder.jpg']}


@pytest.mark.parametrize('name,error,words', [
    ('empty.jpg', ValueError, 'is empty (0 bytes)'),
    ('cut.jpg', ValueError, 'broken or truncated'),
    ('cut.png', ValueError, 'broken or truncated'),
    ('notes.jpg', ValueError, 'is not an image file'),
    ('folder.jpg', IsADirectoryError, 'is a directory'),
])
def test_broken_image_files_name_the_path(tmp_path, name, error, words):
    path = broken_files(tmp_path)[name]
    with pytest.raises(error) as err:
        LoadImageFromFile()(dict(img_path=path))
    assert path in str(err.value) and words in str(err.value)
    assert 'cv2.error' not in repr(err.value) and 'Assertion' not in str(err.value)


def test_a_decoder_that_returns_a_cut_jpeg_is_caught(tmp_path, monkeypatch):
    """Some OpenCV builds return a grey-filled image for a cut-off JPEG: caught by its
    missing end marker. A JPEG with extra bytes after its end marker still loads."""
    img = np.full((40, 50, 3), 200, np.uint8)
    data = jpeg_bytes(img)
    monkeypatch.setattr(image_decode.cv2, 'imdecode',
                        lambda buf, flags: np.full((40, 50, 3), 128, np.uint8))
    with pytest.raises(ValueError, match='cut.jpg.*truncated'):
        decode_stored_rgb(data[:len(data) // 2], 'cut.jpg')
    monkeypatch.undo()
    out = decode_stored_rgb(data + b'vendor trailer', 'trailer.jpg')
    assert out.shape == (40, 50, 3) and abs(int(out.mean()) - 200) <= 2


def test_odd_but_valid_images_decode_sensibly():
    rgb = np.random.default_rng(1).integers(0, 255, (6, 5, 3)).astype(np.uint8)
    # 16-bit grey and 16-bit colour: the high byte, as OpenCV's / mmcv's 'color' mode
    grey16 = (np.arange(30, dtype=np.uint16).reshape(6, 5) * 2000 + 7)
    out = decode_stored_rgb(png_bytes(grey16), 'g16.png')
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out[..., 0], (grey16 >> 8).astype(np.uint8))
    rgb16 = rgb.astype(np.uint16) * 257  # v * 257 >> 8 == v
    ok, enc = cv2.imencode('.png', rgb16[..., ::-1])
    np.testing.assert_array_equal(decode_stored_rgb(enc.tobytes(), 'c16.png'), rgb)
    # grey -> three equal channels; RGBA -> alpha dropped; palette -> its colours
    grey = rgb[..., 0]
    np.testing.assert_array_equal(decode_stored_rgb(png_bytes(grey), 'g.png'),
                                  np.repeat(grey[..., None], 3, 2))
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 9, np.uint8)], 2)
    np.testing.assert_array_equal(decode_stored_rgb(png_bytes(rgba), 'a.png'), rgb)
    pal = Image.fromarray(rgb).convert('P', palette=Image.Palette.ADAPTIVE, colors=8)
    buf = io.BytesIO()
    pal.save(buf, 'PNG')
    np.testing.assert_array_equal(decode_stored_rgb(buf.getvalue(), 'p.png'),
                                  np.asarray(pal.convert('RGB')))
    # 1 x 1
    one = decode_stored_rgb(png_bytes(rgb[:1, :1]), 'one.png')
    np.testing.assert_array_equal(one, rgb[:1, :1])


def test_one_pixel_image_through_the_ssd_train_and_test_pipelines(tmp_path):
    from densebox.registry import TRANSFORMS
    from mmengine.dataset import Compose
    (tmp_path / 'one.png').write_bytes(png_bytes(np.full((1, 1, 3), 77, np.uint8)))
    train = Compose([TRANSFORMS.build(t) for t in [
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
        dict(type='Expand', prob=1.0), dict(type='MinIoURandomCrop'),
        dict(type='Resize', scale=(32, 32)), dict(type='RandomFlip', prob=1.0),
        dict(type='PackDetInputs')]])
    out = train(dict(img_path=str(tmp_path / 'one.png'), height=1, width=1,
                     instances=[dict(bbox=[0, 0, 1, 1], bbox_label=0, ignore_flag=0)]))
    assert tuple(out['inputs'].shape) == (3, 32, 32)
    assert len(out['data_samples'].gt_instances.bboxes) == 1


def test_empty_array_given_to_the_loader_is_named():
    with pytest.raises(ValueError, match=r'results\["img"\]: the image array is empty'):
        LoadImageFromFile()(dict(img_path=None, img=np.zeros((0, 4, 3), np.uint8)))


# --------------------------------------------------------------------------- seg masks
SIX = ('a', 'b', 'c', 'd', 'e', 'f')


def seg_dataset(tmp_path, mask, **kwargs):
    (tmp_path / 'img').mkdir(exist_ok=True)
    (tmp_path / 'ann').mkdir(exist_ok=True)
    Image.fromarray(np.zeros(mask.shape + (3, ), np.uint8)).save(tmp_path / 'img' / 'x.jpg')
    Image.fromarray(mask).save(tmp_path / 'ann' / 'x.png')
    return BaseSegDataset(data_root=str(tmp_path), metainfo=dict(classes=SIX),
                          data_prefix=dict(img_path='img', seg_map_path='ann'),
                          pipeline=[dict(type='LoadImageFromFile'),
                                    dict(type='LoadAnnotations', with_bbox=False,
                                         with_label=False, with_seg=True),
                                    dict(type='RandomFlip', prob=0.5),
                                    dict(type='PackSegInputs')], **kwargs)


def test_mask_value_outside_the_classes_names_file_and_value(tmp_path):
    mask = np.zeros((8, 10), np.uint8)
    mask[0, :3] = 17
    mask[1, 0] = 255  # ignore: fine
    with pytest.raises(ValueError) as err:
        seg_dataset(tmp_path, mask)[0]
    msg = str(err.value)
    assert 'x.png' in msg and 'value 17 at 3 pixels' in msg and '6 classes: 0..5' in msg
    mask[0, :3] = 5
    out = seg_dataset(tmp_path, mask)[0]
    assert int(out['data_samples'].gt_sem_seg.data.max()) == 255


def test_mask_check_after_reduce_zero_label(tmp_path):
    mask = np.full((4, 4), 3, np.uint8)
    mask[0, 0] = 0   # -> 255 (ignore)
    mask[0, 1] = 8   # -> 7, outside 0..5
    with pytest.raises(ValueError, match=r'value 7 \(stored as 8 before reduce_zero_label\)'):
        seg_dataset(tmp_path, mask, reduce_zero_label=True)[0]


def test_load_annotations_without_class_count_does_not_check(tmp_path):
    """A sample that carries no num_classes (a data set that does not set it) is loaded as is."""
    Image.fromarray(np.full((3, 3), 40, np.uint8)).save(tmp_path / 'm.png')
    loader = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True)
    seg = loader(dict(img_path='x', seg_map_path=str(tmp_path / 'm.png')))['gt_seg_map']
    assert int(seg.max()) == 40
