"""Reads the records of a W&B offline run file (run-<id>.wandb), for tests.

The file is a LevelDB-style log, as W&B writes it: a 7-byte header (':W&B', magic 0xBEE1, version 0),
then 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length, type: 1 full, 2 first,
3 middle, 4 last) and a block's tail shorter than a header left as padding. Each whole record is a
serialized `wandb.proto.wandb_internal_pb2.Record`."""

from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = struct.Struct("<IHB")  # crc32, length, type


def read_records(path: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a W&B run file"
    records, pending, pos = [], b"", 7
    while pos + HEADER.size <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER.size:  # padding at a block's end
            pos += left_in_block
            continue
        _, length, kind = HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zeros: the end of what was written
            break
        chunk = data[pos + HEADER.size : pos + HEADER.size + length]
        pos += HEADER.size + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records
