"""Run a model on an image or a folder: drawings + results.json.

    python tools/infer.py CONFIG CHECKPOINT PATH_OR_FOLDER --out-dir out/ [--batch-size 8]
        [--score-thr 0.3] [--device auto]

Same as ``densebox infer``; see ``python tools/infer.py --help``.
"""
from densebox.apis.infer_cli import infer_main

if __name__ == '__main__':
    infer_main()
