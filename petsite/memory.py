"""Memory of a web process: the memory of a decoded upload goes back to the system when
the upload is done, whichever of the process's threads decoded it.

glibc's malloc serves large blocks (Pillow allocates images in blocks of up to 16 MiB)
with mmap, returned to the system at once when freed, but it raises that threshold each
time such a block is freed, up to 32 MiB. After the first upload, images then come from
each thread's own heap, which keeps what it once held: with gunicorn's four threads
taking turns, a process grew by up to 240 MiB for one decode at a time where one decode
needs 140 MiB. A fixed threshold keeps large blocks on mmap (measured in
docs/reliability.md). Called once per web process by ``petsite.wsgi``.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, kept from now on


def return_large_blocks_promptly() -> bool:
    """Fix the mmap threshold of glibc's malloc in this process; False where the C library
    is not glibc (musl, macOS), which have no such threshold to fix."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
