"""Generate the synthetic shapes data, train the quickstart SSD and evaluate it."""
from densebox.cli import quickstart_main

if __name__ == '__main__':
    quickstart_main()
