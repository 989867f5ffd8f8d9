"""ReCo artifacts: `python tools/reco.py index ...` (CLIP image index of a folder, resumable)
and `python tools/reco.py refs ...` (per-class references); see densebox/reco/cli.py."""
from densebox.reco.cli import main

if __name__ == '__main__':
    main()
