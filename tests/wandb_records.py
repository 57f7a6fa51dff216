"""Read an offline W&B run's summary from its ``run-<id>.wandb`` file, as ``wandb sync`` would upload it.

wandb 0.2x+ keeps an offline run only in that file (its Go core writes no ``wandb-summary.json`` until synced): a
7-byte header, then LevelDB-log records in 32 KiB blocks (4-byte CRC, 2-byte length, 1-byte type: 1 whole,
2/3/4 first/middle/last piece), each one of wandb's protobuf ``Record`` messages.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK, HEADER, PIECE_HEADER = 32768, 7, 7
WHOLE, LAST = 1, 4


def raw_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pieces = HEADER, b""
    while position + PIECE_HEADER <= len(data):
        if BLOCK - position % BLOCK < PIECE_HEADER:  # the rest of a block too short for a piece is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + PIECE_HEADER])
        pieces += data[position + PIECE_HEADER:position + PIECE_HEADER + length]
        position += PIECE_HEADER + length
        if kind in (WHOLE, LAST):
            yield pieces
            pieces = b""


def run_summary(run_folder: Path) -> dict[str, Any]:
    """The run's summary: every summary update in the file, applied in order."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_folder.glob("run-*.wandb")
    summary: dict[str, Any] = {}
    for raw in raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    return summary
