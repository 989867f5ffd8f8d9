"""Data preprocessors against a plain numpy re-statement: a batch of images of different
sizes is normalised and padded bottom / right (to the largest image, to ``size``, to a
multiple of ``pad_size_divisor``), training ground truth is padded with 255 (ignored by the
loss), and ``channels_last=True`` gives the contiguous path's numbers."""
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData

from densebox.models.data_preprocessor import DetDataPreprocessor, SegDataPreprocessor
from densebox.structures import DetDataSample, SegDataSample

MEAN, STD = [110.0, 120.0, 130.0], [50.0, 60.0, 70.0]
PAD_VALUE = -3.0  # not 0, so that a missing or misplaced pad shows


def _seg_batch(sizes, seed=0):
    rng = np.random.default_rng(seed)
    images, labels, samples = [], [], []
    for h, w in sizes:
        image = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        label = rng.integers(0, 5, (1, h, w)).astype(np.int64)
        label[0, 0, :3] = 255  # some ignored pixels of its own
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(label.copy()))
        images.append(image)
        labels.append(label)
        samples.append(sample)
    data = dict(inputs=[torch.from_numpy(i.copy()) for i in images], data_samples=samples)
    return data, images, labels


def _plain_pad(arrays, shape, fill):
    """Each (C, h, w) array at the top left of a (C, H, W) canvas of ``fill``."""
    out = np.full((len(arrays), arrays[0].shape[0]) + tuple(shape), fill, dtype=np.float64)
    for k, a in enumerate(arrays):
        out[k, :, :a.shape[1], :a.shape[2]] = a
    return out


def _normalised(image):
    return (image.astype(np.float64) - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]


@pytest.mark.parametrize('size,divisor,expected', [
    ((28, 36), 1, (30, 36)),   # at least `size`; the 30-row image keeps its height
    (None, 8, (32, 32)),       # the largest image (30 x 30) up to a multiple of 8
    (None, 1, (30, 30)),
])
def test_seg_preprocessor_pads_images_and_ground_truth_of_different_sizes(size, divisor,
                                                                          expected):
    sizes = [(20, 30), (25, 22), (30, 17)]
    preprocessor = SegDataPreprocessor(mean=MEAN, std=STD, pad_value=PAD_VALUE,
                                       pad_size_divisor=divisor, size=size)
    data, images, labels = _seg_batch(sizes)
    out = preprocessor(data, training=True)
    inputs = out['inputs']
    assert tuple(inputs.shape) == (3, 3) + expected and inputs.dtype == torch.float32
    ref = _plain_pad([_normalised(i) for i in images], expected, PAD_VALUE)
    np.testing.assert_allclose(inputs.numpy(), ref, rtol=0, atol=1e-5)
    for sample, label, (h, w) in zip(out['data_samples'], labels, sizes):
        gt = sample.gt_sem_seg.data
        assert gt.dtype == torch.int64 and tuple(gt.shape) == (1,) + expected
        np.testing.assert_array_equal(gt.numpy(), _plain_pad([label], expected, 255)[0])
        assert sample.batch_input_shape == sample.pad_shape == expected
        assert sample.img_shape == (h, w)  # the image's own extent stays known


def test_seg_preprocessor_leaves_test_ground_truth_at_its_size():
    """The metric compares with ground truth at the original size: no padding at test."""
    preprocessor = SegDataPreprocessor(mean=MEAN, std=STD, size=(32, 32))
    data, images, labels = _seg_batch([(20, 30), (25, 22)], seed=1)
    out = preprocessor(data, training=False)
    assert tuple(out['inputs'].shape) == (2, 3, 32, 32)
    for sample, label in zip(out['data_samples'], labels):
        np.testing.assert_array_equal(sample.gt_sem_seg.data.numpy(), label)
        assert sample.batch_input_shape == (32, 32)


def _det_batch(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]
    samples = [DetDataSample(metainfo=dict(img_shape=(h, w))) for h, w in sizes]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('cls,extra', [(DetDataPreprocessor, {}),
                                       (SegDataPreprocessor, dict(size=(40, 64)))])
def test_channels_last_gives_the_contiguous_numbers(cls, extra):
    sizes = [(30, 41), (37, 26)]
    plain = cls(mean=MEAN, std=STD, pad_size_divisor=16, pad_value=PAD_VALUE, **extra)
    fast = cls(mean=MEAN, std=STD, pad_size_divisor=16, pad_value=PAD_VALUE,
               channels_last=True, **extra)
    a = plain(_det_batch(sizes))
    b = fast(_det_batch(sizes))
    assert a['inputs'].is_contiguous()
    assert b['inputs'].is_contiguous(memory_format=torch.channels_last)
    assert not b['inputs'].is_contiguous()  # really the other layout (C, H, W > 1)
    assert torch.equal(a['inputs'], b['inputs'])
    for x, y in zip(a['data_samples'], b['data_samples']):
        assert x.metainfo == y.metainfo
    # 37 x 41 up to a multiple of 16, then (for the segmenter) at least 40 x 64
    assert tuple(a['inputs'].shape[-2:]) == ((48, 64) if extra else (48, 48))


def test_channels_last_detector_predicts_what_the_contiguous_one_does():
    """A detector whose preprocessor returns channels-last batches: the same outputs."""
    from test_ssd import _tiny_ssd
    torch.manual_seed(0)
    model = _tiny_ssd().eval()
    with torch.no_grad():
        plain = model.data_preprocessor(_det_batch([(96, 96), (80, 90)], seed=3))
        model.data_preprocessor.channels_last = True
        fast = model.data_preprocessor(_det_batch([(96, 96), (80, 90)], seed=3))
        assert fast['inputs'].is_contiguous(memory_format=torch.channels_last)
        ref = model(plain['inputs'], mode='tensor')
        out = model(fast['inputs'], mode='tensor')
    for r, o in zip(ref, out):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
