"""Broker CPU per GB produced, by what it was spent on, from folded stacks (fold.py's output).

    python3 breakdown.py HZ GB name=file.folded [name=file.folded ...]

A sample counts for the first category (top to bottom) with a frame matching one of its
patterns; the rest is "other". CPU-s/GB = samples / HZ / GB (the profiler's rate, the bytes
produced during the recording).
"""
import re
import sys

CATEGORIES = [
    ("CRC-32C of each batch", [r"crc_fast::"]),
    ("per-record checks (walk_records)", [r"sluice_engine::batch::walk_records"]),
    ("copy into the write-behind", [r"SegmentWriter::append_held", r"SegmentWriter::append\b"]),
    ("direct writes: submission, block layer, virtio", [r"^io_write", r"ext4_file_write_iter", r"iomap_dio", r"blk_mq", r"virtqueue", r"virtblk"]),
    ("socket receive (copy from the kernel)", [r"tcp_recvmsg", r"__sys_recvfrom", r"sock_recvmsg"]),
    ("socket send (responses)", [r"tcp_sendmsg", r"__sys_sendto", r"sendmsg"]),
    ("request decoding and handling (rest of sluice_net)", [r"sluice_net::", r"kafka_protocol::"]),
    ("io_uring and the glommio runtime (rest)", [r"io_uring", r"glommio::", r"io_cqring", r"schedule"]),
]


COMPILED = [(name, [re.compile(p) for p in patterns]) for name, patterns in CATEGORIES]


def categorize(stack):
    frames = stack.split(";")
    for name, patterns in COMPILED:
        if any(rx.search(f) for rx in patterns for f in frames):
            return name
    return "other"


def main():
    hz, gb = float(sys.argv[1]), float(sys.argv[2])
    runs = [arg.split("=", 1) for arg in sys.argv[3:]]
    table = {}
    for label, path in runs:
        counts = {}
        for line in open(path):
            stack, n = line.rsplit(" ", 1)
            c = categorize(stack)
            counts[c] = counts.get(c, 0) + int(n)
        table[label] = counts
    names = [c for c, _ in CATEGORIES] + ["other"]
    print("| broker CPU-s/GB | " + " | ".join(label for label, _ in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for c in names + ["total"]:
        cells = []
        for label, _ in runs:
            n = sum(table[label].values()) if c == "total" else table[label].get(c, 0)
            cells.append(f"{n / hz / gb:.3f}")
        print(f"| {c} | " + " | ".join(cells) + " |")


main()
