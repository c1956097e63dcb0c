#!/usr/bin/env python3
"""What the device underneath gives a writer that syncs: O_DIRECT writes of BLOCK bytes, each
followed by fdatasync (or not, with --no-sync), into a file that is (a) extended by the writes,
(b) preallocated with fallocate (unwritten extents, as sluice's segments are), or (c) written
with zeros beforehand (a pure overwrite). Prints MB/s and per-write latency for each.

    tuning/fsync-always/device-probe.py [--block BYTES] [--count N] [--no-sync] [--dir DIR]
"""
import argparse, mmap, os, time

ap = argparse.ArgumentParser()
ap.add_argument("--block", type=int, default=4 << 20)
ap.add_argument("--count", type=int, default=100)
ap.add_argument("--no-sync", action="store_true")
ap.add_argument("--dir", default=os.path.join(os.path.dirname(__file__), "../../target"))
args = ap.parse_args()
path = os.path.join(args.dir, "fsync-probe.dat")
buf = mmap.mmap(-1, args.block)  # page-aligned, as O_DIRECT needs
buf.write(b"x" * args.block)


def run(mode):
    if os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    total = args.block * args.count
    if mode == "fallocate":
        os.posix_fallocate(fd, 0, total)
    elif mode == "zeroed":
        zeros = mmap.mmap(-1, 1 << 20)
        for off in range(0, total, 1 << 20):
            os.pwrite(fd, zeros, off)
        os.fsync(fd)
    lat = []
    start = time.perf_counter()
    for i in range(args.count):
        t = time.perf_counter()
        os.pwrite(fd, buf, i * args.block)
        if not args.no_sync:
            os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1e6)
    elapsed = time.perf_counter() - start
    os.close(fd)
    os.unlink(path)
    lat.sort()
    print(f"{mode:10s} block={args.block} sync={not args.no_sync} MB/s={total / elapsed / 1e6:7.1f} "
          f"p50={lat[len(lat) // 2]:8.0f}us p99={lat[int(len(lat) * 0.99)]:8.0f}us")


for _ in range(2):
    for mode in ("extend", "fallocate", "zeroed"):
        run(mode)
