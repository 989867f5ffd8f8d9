"""train a densebox model from a config; see `python tools/train.py --help`."""
from densebox.cli import train_main

if __name__ == '__main__':
    train_main()
