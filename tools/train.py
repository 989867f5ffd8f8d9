"""train a densebox model from a config; see `python tools/train.py --help`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder
from densebox.cli import train_main  # noqa: E402

if __name__ == '__main__':
    train_main()
