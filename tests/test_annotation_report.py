"""Corrupt annotations: every clipped or dropped box counted and logged, unknown ids named,
empty data sets explained (COCO json and VOC xml written into tmp_path)."""
import json
import logging

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from PIL import Image

from densebox.datasets import CocoDetDataset, VOCDataset
from densebox.datasets.annotation_report import AnnotationReport

CLASSES = ('person', 'car')


@pytest.fixture
def captured_log():
    """Records of mmengine's current logger (where data sets write their report)."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = MMLogger.get_current_instance()
    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def write_coco(tmp_path, annotations, images=None, name='instances.json'):
    images = images if images is not None else [dict(id=1, file_name='a.jpg', height=50, width=70)]
    data = dict(images=images, annotations=annotations,
                categories=[dict(id=1, name='person'), dict(id=3, name='car')])
    (tmp_path / name).write_text(json.dumps(data))
    return str(tmp_path / name)


def ann(ann_id, bbox, category_id=1, **extra):
    return dict(dict(id=ann_id, image_id=1, category_id=category_id, bbox=bbox,
                     area=abs(float(bbox[2] * bbox[3])), iscrowd=0), **extra)


def coco(path, **kwargs):
    return CocoDetDataset(ann_file=path, metainfo=dict(classes=CLASSES), **kwargs)


# --------------------------------------------------------------------------- COCO
def test_coco_clips_and_drops_with_counts_and_examples(tmp_path, captured_log):
    path = write_coco(tmp_path, [
        ann(1, [10, 5, 20, 10]),                    # kept as it is
        ann(2, [60, 40, 20, 20]),                   # reaches out right and below: clipped
        ann(3, [-5, -4, 10, 10], iscrowd=1),        # out left / top: clipped, still crowd
        ann(4, [80, 5, 10, 10]),                    # entirely outside: dropped
        ann(5, [5, 5, 0, 10]),                      # zero width: dropped
        ann(6, [5, 5, 10, -3]),                     # negative height: dropped
        ann(7, [5, 5, 0.5, 10]),                    # under 1 px: dropped (as mmdet)
        ann(8, [69.5, 5, 3, 10]),                   # half a pixel inside: dropped
        dict(ann(9, [1, 1, 5, 5]), area=0),         # area 0: dropped (as mmdet)
    ])
    ds = coco(path)
    boxes = [inst['bbox'] for inst in ds.get_data_info(0)['instances']]
    assert boxes == [[10, 5, 30, 15], [60, 40, 70, 50], [0, 0, 5, 6]]
    assert [inst['ignore_flag'] for inst in ds.get_data_info(0)['instances']] == [0, 0, 1]
    report = ds.annotation_report
    assert report.count('boxes clipped to the image') == 2
    assert report.count('boxes outside the image dropped') == 1
    assert report.count('zero-area or negative boxes dropped') == 2
    assert report.count('boxes under 1 pixel wide or high dropped') == 1
    assert report.count('boxes with under 1 pixel inside the image dropped') == 1
    assert report.count('boxes whose "area" is <= 0 dropped') == 1
    assert report.total == 8
    # logged once for the data set, as a warning with the file and the annotation ids
    text = [r.getMessage() for r in captured_log if 'changed or dropped' in r.getMessage()]
    assert len(text) == 1 and captured_log[-1].levelno == logging.WARNING
    assert 'instances.json' in text[0] and '8 annotations' in text[0]
    assert '2 boxes clipped to the image, e.g. a.jpg id 2 (bbox [60, 40, 20, 20], image 70x50)' \
        in text[0]
    assert 'a.jpg id 5' in text[0] and 'a.jpg id 6' in text[0]


def test_coco_clean_file_logs_nothing(tmp_path, captured_log):
    ds = coco(write_coco(tmp_path, [ann(1, [10, 5, 20, 10]), ann(2, [0, 0, 70, 50])]))
    assert ds.annotation_report.total == 0 and ds.annotation_report.summary() is None
    assert not [r for r in captured_log if 'changed or dropped' in r.getMessage()]


def test_coco_unknown_category_is_an_error_unless_dropping_is_asked_for(tmp_path):
    path = write_coco(tmp_path, [ann(1, [10, 5, 20, 10]), ann(17, [1, 1, 5, 5], category_id=99)])
    with pytest.raises(ValueError) as err:
        coco(path)
    msg = str(err.value)
    assert 'instances.json' in msg and 'annotation id 17' in msg and "'a.jpg'" in msg
    assert 'category_id 99' in msg and 'skip_unknown_categories=True' in msg
    ds = coco(path, skip_unknown_categories=True)
    assert len(ds.get_data_info(0)['instances']) == 1
    assert ds.annotation_report.count('annotations with an unknown category_id dropped') == 1


def test_coco_categories_left_out_of_the_classes_are_counted(tmp_path):
    path = write_coco(tmp_path, [ann(1, [10, 5, 20, 10]), ann(2, [1, 1, 5, 5], category_id=3)])
    ds = CocoDetDataset(ann_file=path, metainfo=dict(classes=('person', )))
    assert len(ds.get_data_info(0)['instances']) == 1
    reason = 'annotations of categories not in metainfo["classes"] dropped'
    assert ds.annotation_report.count(reason) == 1
    assert "category 'car'" in ds.annotation_report.summary()


@pytest.mark.parametrize('bbox', [[1, 2, 3], [1, 2, float('nan'), 4], ['a', 1, 2, 3]])
def test_coco_malformed_box_names_the_annotation(tmp_path, bbox):
    path = write_coco(tmp_path, [dict(id=31, image_id=1, category_id=1, bbox=bbox, area=1)])
    with pytest.raises(ValueError, match='annotation id 31'):
        coco(path)


def test_empty_coco_files_give_a_clear_error(tmp_path):
    no_images = write_coco(tmp_path, [], images=[], name='no_images.json')
    with pytest.raises(ValueError, match='no_images.json.*lists no images'):
        coco(no_images)
    with pytest.raises(ValueError, match='lists no images'):
        coco(no_images, test_mode=True)
    # images but no annotation: training with filter_empty_gt has nothing left
    no_anns = write_coco(tmp_path, [], name='no_anns.json')
    with pytest.raises(ValueError) as err:
        coco(no_anns, filter_cfg=dict(filter_empty_gt=True))
    assert 'no_anns.json' in str(err.value) and 'drops all 1 images' in str(err.value)
    assert '1 have no box' in str(err.value)
    assert len(coco(no_anns, test_mode=True, filter_cfg=dict(filter_empty_gt=True))) == 1
    # (before: an empty training set reached mmengine's DefaultSampler: ZeroDivisionError)


# --------------------------------------------------------------------------- VOC
def write_voc(tmp_path, objects, size=(50, 70)):
    """objects: (name, difficult, (xmin, ymin, xmax, ymax)) of one image 000001."""
    base = tmp_path / 'VOC2007'
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (base / sub).mkdir(parents=True, exist_ok=True)
    objs = ''.join(
        f'<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>'
        f'<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>'
        for n, d, b in objects)
    (base / 'Annotations' / '000001.xml').write_text(
        f'<annotation><size><width>{size[1]}</width><height>{size[0]}</height></size>{objs}'
        '</annotation>')
    Image.fromarray(np.zeros(size + (3, ), np.uint8)).save(base / 'JPEGImages' / '000001.jpg')
    (base / 'ImageSets' / 'Main' / 'trainval.txt').write_text('000001\n')
    return dict(data_root=str(tmp_path), ann_file='VOC2007/ImageSets/Main/trainval.txt',
                metainfo=dict(classes=CLASSES))


def test_voc_clips_and_drops_with_counts(tmp_path, captured_log):
    kwargs = write_voc(tmp_path, [
        ('person', 0, (10, 20, 30, 40)),     # inside
        ('car', 0, (0, 5, 75, 52)),          # xmin 0 and past the 70x50 size: clipped
        ('car', 0, (80, 5, 90, 10)),         # outside: dropped
        ('person', 0, (30, 20, 10, 40)),     # xmax < xmin: dropped
        ('person', 0, (12, 12, 12, 12)),     # one pixel: kept, 1x1
    ])
    ds = VOCDataset(**kwargs)
    boxes = [inst['bbox'] for inst in ds.get_data_info(0)['instances']]
    assert boxes == [[9, 19, 30, 40], [0, 4, 70, 50], [11, 11, 12, 12]]
    report = ds.annotation_report
    assert report.count('boxes clipped to the image') == 1
    assert report.count('boxes outside the image dropped') == 1
    assert report.count('zero-area or negative boxes (xmax < xmin or ymax < ymin) dropped') == 1
    text = [r.getMessage() for r in captured_log if 'changed or dropped' in r.getMessage()]
    assert len(text) == 1 and '000001.xml id <object> #1 (bndbox 0 5 75 52, size 70x50)' in text[0]


def test_voc_skipped_class_is_counted(tmp_path):
    kwargs = write_voc(tmp_path, [('person', 0, (10, 20, 30, 40)), ('dragon', 0, (1, 1, 5, 5))])
    ds = VOCDataset(skip_unknown_classes=True, **kwargs)
    reason = 'objects of classes not in metainfo["classes"] dropped'
    assert ds.annotation_report.count(reason) == 1 and "'dragon'" in ds.annotation_report.summary()


def test_voc_difficult_boxes_in_training(tmp_path):
    kwargs = write_voc(tmp_path, [('person', 1, (10, 20, 30, 40)), ('car', 0, (1, 1, 5, 5))])
    assert [i['ignore_flag'] for i in VOCDataset(**kwargs).get_data_info(0)['instances']] == [1, 0]
    trained = VOCDataset(use_difficult=True, **kwargs)
    assert [i['ignore_flag'] for i in trained.get_data_info(0)['instances']] == [0, 0]
    # the SSD VOC recipes train on difficult boxes (Caffe SSD) and evaluate with them ignored
    for name in ('configs/ssd300_voc.py', 'configs/ssd512_voc.py'):
        cfg = Config.fromfile(name)
        assert all(d['use_difficult'] for d in cfg.train_dataloader.dataset.dataset.datasets)
        assert not cfg.test_dataloader.dataset.get('use_difficult', False)


def test_report_keeps_a_few_examples_per_reason():
    report = AnnotationReport('X', max_examples=2)
    for i in range(5):
        report.add('boxes clipped to the image', 'f.json', i)
    text = report.summary()
    assert report.count('boxes clipped to the image') == 5
    assert '5 boxes clipped to the image, e.g. f.json id 0; f.json id 1, ...' in text
