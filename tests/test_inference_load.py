"""densebox.inference under load (threads sharing one model) and with bad inputs."""
import importlib
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from densebox.apis import inference, init_model
from densebox.ops import conv as conv_module

inference_module = importlib.import_module('densebox.apis.inference')  # the name is shadowed

QUICKSTART = 'configs/quickstart_ssd_shapes.py'


def fresh_model():
    """The quickstart SSD with random weights whose class scores are spread apart (so that
    a numeric difference shows in the kept boxes instead of hiding in near-ties)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "no checkpoint given"
        model = init_model(QUICKSTART, device='cpu')
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'cls_convs' in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def images(n=8):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (80 + 5 * i, 120 - 3 * i, 3)).astype(np.uint8) for i in range(n)]


def same(a, b):
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.labels, b.labels))


def test_eight_threads_on_one_model_give_the_serial_results(monkeypatch):
    """Threads start together on a model that has not run yet, so its lazy state (the CPU
    conv kernel choice, the cached pipeline) is made while they race. Timing is made to
    disagree from call to call (as timings on a busy machine do): without one choice per
    conv shared by all threads, threads would run different kernels and differ by rounding."""
    monkeypatch.setenv(conv_module.ENV_CPU_CONV_CACHE, 'off')
    picks = iter(['nnpack', 'aten'] * 10_000)

    def disagreeing_timing(self, x):
        threading.Event().wait(0.005)  # timing takes a while: other threads get there too
        return next(picks)

    monkeypatch.setattr(conv_module.AutotunedConv2d, '_time_kernels', disagreeing_timing)
    model = fresh_model()
    imgs = images()
    start = threading.Barrier(len(imgs))
    got, errors = [None] * len(imgs), []

    def work(i):
        try:
            start.wait()
            got[i] = [inference(imgs[i], model), inference([imgs[i]], model)[0]]
        except Exception as err:  # noqa: BLE001  (re-raised below, in the test's thread)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i, )) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    serial = [inference(img, model) for img in imgs]
    assert all(len(r.scores) > 0 for r in serial)
    for i, ref in enumerate(serial):
        assert all(same(r, ref) for r in got[i]), f'thread {i} differs from the serial result'
    if conv_module.nnpack_available():  # every conv got exactly one choice per size class
        convs = [m for m in model.modules() if isinstance(m, conv_module.AutotunedConv2d)]
        assert convs and all(len(c.kernel_choice) == 1 for c in convs)
        assert {c for conv in convs for c in conv.kernel_choice.values()} == {'nnpack', 'aten'}


def test_default_model_from_the_environment_is_built_once(monkeypatch):
    built = []

    def slow_init_model(config, checkpoint=None, **kwargs):
        built.append(config)
        threading.Event().wait(0.2)
        return torch.nn.Identity()

    monkeypatch.setattr('densebox.apis.model.init_model', slow_init_model)
    monkeypatch.setenv(inference_module.DEFAULT_MODEL_ENV, 'configs/quickstart_ssd_shapes.py')
    monkeypatch.setitem(inference_module._default, 'model', None)
    monkeypatch.setitem(inference_module._default, 'env_value', None)
    models = []
    threads = [threading.Thread(target=lambda: models.append(
        inference_module.get_default_model())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and len(models) == 8 and all(m is models[0] for m in models)


@pytest.fixture(scope='module')
def model():
    return fresh_model()


def test_empty_inputs_name_the_argument(model):
    ok = images(1)[0]
    empty = r'input 1: the image array is empty \(shape \(0, 0, 3\)\)'
    with pytest.raises(ValueError, match=empty):
        inference([ok, np.zeros((0, 0, 3), np.uint8)], model)
    with pytest.raises(ValueError, match='input 0: the image array is empty'):
        inference(np.zeros((5, 0), np.uint8), model)
    with pytest.raises(ValueError, match='input 0: the image array is empty'):
        inference(Image.new('RGB', (0, 3)), model)


def test_broken_files_name_the_path(model, tmp_path):
    (tmp_path / 'zero.jpg').write_bytes(b'')
    (tmp_path / 'text.png').write_text('not an image')
    (tmp_path / 'dir.jpg').mkdir()
    cases = [('zero.jpg', ValueError, 'is empty'), ('text.png', ValueError, 'not an image file'),
             ('dir.jpg', IsADirectoryError, 'is a directory')]
    for name, error, words in cases:
        with pytest.raises(error) as err:
            inference(str(tmp_path / name), model)
        assert str(tmp_path / name) in str(err.value) and words in str(err.value)


def test_tiny_and_odd_images_run(model, tmp_path):
    one = inference(np.full((1, 1, 3), 90, np.uint8), model)
    assert one.shape == (1, 1) and np.all(one.boxes >= 0) and np.all(one.boxes <= 1)
    grey16 = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500)
    Image.fromarray(grey16).save(tmp_path / 'g16.png')
    rgba = np.zeros((12, 10, 4), np.uint8)
    Image.fromarray(rgba).save(tmp_path / 'rgba.png')
    for name in ('g16.png', 'rgba.png'):
        assert inference(str(tmp_path / name), model).shape == (12, 10)
