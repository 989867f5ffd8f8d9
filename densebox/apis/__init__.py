"""Using densebox from an application: build a model, run it on images, get results.

    import densebox
    model = densebox.init_model('configs/ssd300_coco.py', 'ssd300_coco.pth')
    res = densebox.inference('street.jpg', model)   # DetResult: boxes, scores, labels
    res.save('street_pred.jpg')
"""
from .inference import (DEFAULT_MODEL_ENV, build_test_pipeline, get_default_model, inference,
                        set_default_model)
from .model import init_model, resolve_device
from .results import DetResult, SegResult

__all__ = ['init_model', 'inference', 'set_default_model', 'get_default_model', 'DetResult',
           'SegResult', 'resolve_device', 'build_test_pipeline', 'DEFAULT_MODEL_ENV']
