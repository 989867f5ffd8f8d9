"""The dense CRF ReCo applies to its scores (Krähenbühl and Koltun's fully connected CRF,
through the ``pydensecrf`` package; parameters as the ReCo code: 10 mean-field iterations,
a Gaussian kernel sxy 1 compat 3, a bilateral kernel sxy 67 srgb 3 compat 4)."""
import numpy as np
import torch

__all__ = ['require_pydensecrf', 'dense_crf']


def require_pydensecrf():
    try:
        import pydensecrf.densecrf as dcrf  # noqa: F401
        import pydensecrf.utils  # noqa: F401
    except ImportError as err:
        raise ImportError('the dense CRF (crf=True) needs the pydensecrf package: '
                          'pip install pydensecrf2 (or pip install "densebox[crf]")') from err
    return dcrf


def dense_crf(image: np.ndarray, log_probs: torch.Tensor, iterations: int = 10,
              gaussian_sxy: float = 1, gaussian_compat: float = 3, bilateral_sxy: float = 67,
              bilateral_srgb: float = 3, bilateral_compat: float = 4) -> torch.Tensor:
    """(H, W, 3) uint8 RGB image, (K, H, W) log-probabilities -> (K, H, W) CRF marginals."""
    dcrf = require_pydensecrf()
    from pydensecrf.utils import unary_from_softmax
    k, h, w = log_probs.shape
    probs = torch.softmax(log_probs.float(), dim=0).numpy()
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    # the reference code hands pydensecrf the image in BGR order
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb,
                             rgbim=np.ascontiguousarray(image[:, :, ::-1]),
                             compat=bilateral_compat)
    q = np.array(crf.inference(int(iterations))).reshape(k, h, w)
    return torch.from_numpy(q.astype(np.float32))
