"""`cs336 download tinystories|owt`: fetch the published corpora from the Hugging Face Hub (or a folder)."""

from __future__ import annotations

import argparse

from cs336_basics.commands import byte_size


def register(subparsers, parents) -> None:
    from cs336_basics.datasets import DATASETS

    parser = subparsers.add_parser(
        "download", parents=parents, help="download TinyStories or the OpenWebText sample",
        description="Download the published TinyStoriesV2-GPT4 or OpenWebText-sample files from the Hugging Face Hub "
                    "into DEST/NAME/ through the Hub client: HF_ENDPOINT (a mirror), HF_TOKEN, HF_HUB_OFFLINE and the "
                    "Hub cache (HF_HOME, HF_HUB_CACHE) apply, and a file already in the cache is not fetched again. "
                    ".gz files are decompressed; sizes and checksums are verified; finished files are recorded in "
                    "DEST/NAME/downloads.json and skipped on reruns.")
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which corpus")
    parser.add_argument("--dest", default="data", metavar="DIR", help="parent folder (default: data/)")
    parser.add_argument("--split", default="train,valid", metavar="SPLITS",
                        help="comma-separated splits to fetch (default: train,valid)")
    parser.add_argument("--max-bytes", type=byte_size, default=None, metavar="N",
                        help="fetch only a prefix of about N bytes (e.g. 50M), cut after the last <|endoftext|>")
    parser.add_argument("--from-dir", default=None, metavar="DIR",
                        help="offline: copy the published files from DIR instead of downloading")
    parser.add_argument("--force", action="store_true", help="place the file again even if it is up to date")
    parser.add_argument("--verify", action="store_true", help="re-hash files already present before skipping them")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cs336_basics.download import download_dataset

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    paths = download_dataset(args.dataset, args.dest, splits, max_bytes=args.max_bytes, from_dir=args.from_dir,
                             force=args.force, verify=args.verify)
    for split, path in paths.items():
        print(f"{split}\t{path}")
    return 0
