"""Loss / lr / metric curves of one or more work dirs (same as ``densebox plot-logs``).

    python tools/analysis/plot_logs.py work_dirs/a work_dirs/b --legend a b --out curves.png
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from densebox.visualization.log_plots import plot_logs_main  # noqa: E402

if __name__ == '__main__':
    plot_logs_main()
