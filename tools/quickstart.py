"""Generate the synthetic shapes data, train the quickstart SSD and evaluate it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder
from densebox.cli import quickstart_main  # noqa: E402

if __name__ == '__main__':
    quickstart_main()
