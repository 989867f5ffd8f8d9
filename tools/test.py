"""test a densebox model from a config; see `python tools/test.py --help`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder

from densebox.cli import test_main  # noqa: E402

if __name__ == '__main__':
    test_main()
