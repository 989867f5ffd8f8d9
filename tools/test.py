"""test a densebox model from a config; see `python tools/test.py --help`."""
from densebox.cli import test_main

if __name__ == '__main__':
    test_main()
