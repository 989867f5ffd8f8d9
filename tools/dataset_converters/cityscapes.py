r"""Make the Cityscapes ``*_gtFine_labelTrainIds.png`` masks that CityscapesDataset reads.

The download has polygons (``*_gtFine_polygons.json``), label-id and instance-id pngs, but
no train-id masks. This script runs cityscapesscripts' own converter
(``cityscapesscripts.preparation.json2labelImg.json2labelImg(..., 'trainIds')``, the
function behind ``createTrainIdLabelImgs``) over every polygons file, in parallel, and
optionally writes split lists.

    python tools/dataset_converters/cityscapes.py data/cityscapes --nproc 8

Equivalent, single process:
    CITYSCAPES_DATASET=data/cityscapes \
        python -m cityscapesscripts.preparation.createTrainIdLabelImgs
"""
import argparse
import glob
import os
import os.path as osp
import sys
from multiprocessing import Pool
from typing import List, Optional

POLYGONS_SUFFIX = '_polygons.json'
TRAIN_IDS_SUFFIX = '_labelTrainIds.png'


def convert_one(json_file: str) -> str:
    """Write the train-id png next to one ``*_gtFine_polygons.json``; returns its path."""
    from cityscapesscripts.preparation.json2labelImg import json2labelImg
    out_file = json_file[:-len(POLYGONS_SUFFIX)] + TRAIN_IDS_SUFFIX
    json2labelImg(json_file, out_file, 'trainIds')
    return out_file


def find_polygons(root: str, gt_dir: str = 'gtFine') -> List[str]:
    """Every ``<root>/<gt_dir>/<split>/<city>/*_polygons.json``, sorted."""
    return sorted(glob.glob(osp.join(root, gt_dir, '*', '*', '*' + POLYGONS_SUFFIX)))


def convert(root: str, gt_dir: str = 'gtFine', nproc: int = 1,
            skip_existing: bool = False) -> List[str]:
    """Convert every polygons file under ``root/gt_dir``; returns the written pngs.

    Raises:
        FileNotFoundError: no polygons file found (names the searched pattern).
    """
    files = find_polygons(root, gt_dir)
    if not files:
        raise FileNotFoundError(
            f'no "*{POLYGONS_SUFFIX}" files under {osp.join(root, gt_dir, "<split>", "<city>")}; '
            'unpack gtFine_trainvaltest.zip there (see data/README.md)')
    if skip_existing:
        files = [f for f in files
                 if not osp.isfile(f[:-len(POLYGONS_SUFFIX)] + TRAIN_IDS_SUFFIX)]
    if nproc > 1 and len(files) > 1:
        with Pool(nproc) as pool:
            return pool.map(convert_one, files, chunksize=8)
    return [convert_one(f) for f in files]


def write_split_lists(root: str, out_dir: Optional[str] = None) -> None:
    """Write ``<split>.txt`` (``<city>/<city>_<seq>_<frame>`` per line) for train / val / test."""
    out_dir = out_dir or root
    for split in ('train', 'val', 'test'):
        pattern = osp.join(root, 'leftImg8bit', split, '*', '*_leftImg8bit.png')
        split_dir = osp.join(root, 'leftImg8bit', split)
        names = sorted(osp.relpath(f, split_dir)[:-len('_leftImg8bit.png')]
                       for f in glob.glob(pattern))
        if names:
            with open(osp.join(out_dir, f'{split}.txt'), 'w') as f:
                f.write(''.join(n + '\n' for n in names))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root', help='Cityscapes root (holds leftImg8bit/ and gtFine/)')
    parser.add_argument('--gt-dir', default='gtFine')
    parser.add_argument('--nproc', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--skip-existing', action='store_true')
    parser.add_argument('--split-lists', action='store_true',
                        help='also write train.txt / val.txt / test.txt in root')
    args = parser.parse_args(argv)
    written = convert(args.root, args.gt_dir, args.nproc, args.skip_existing)
    print(f'wrote {len(written)} *{TRAIN_IDS_SUFFIX} files under '
          f'{osp.join(args.root, args.gt_dir)}')
    if args.split_lists:
        write_split_lists(args.root)


if __name__ == '__main__':
    sys.exit(main())
