"""ReCo artifacts: `python tools/reco.py index ...` (CLIP image index of a folder, resumable)
and `python tools/reco.py refs ...` (per-class references); see densebox/reco/cli.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, from any folder
from densebox.reco.cli import main  # noqa: E402

if __name__ == '__main__':
    main()
