"""Benchmarks behind ``tools/benchmark.py``.

:mod:`densebox.benchmark.e2e`: end-to-end SSD300 inference, densebox against torchvision
with identical weights.
"""
from .e2e import (DenseboxSSD, TorchvisionSSD, densebox_from_torchvision, format_table,
                  paired, random_images, random_torchvision_ssd300, run_inference_benchmark)

__all__ = ['DenseboxSSD', 'TorchvisionSSD', 'densebox_from_torchvision', 'format_table', 'paired',
           'random_images', 'random_torchvision_ssd300', 'run_inference_benchmark']
