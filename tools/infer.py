"""Run a model on an image or a folder: drawings + results.json.

    python tools/infer.py CONFIG CHECKPOINT PATH_OR_FOLDER --out-dir out/ [--batch-size 8]
        [--score-thr 0.3] [--device auto]

Same as ``densebox infer``; see ``python tools/infer.py --help``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder

from densebox.apis.infer_cli import infer_main  # noqa: E402

if __name__ == '__main__':
    infer_main()
