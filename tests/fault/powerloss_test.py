#!/usr/bin/python3
"""The power-loss model (powerloss_shim.cc, powerloss.py): after kill -9 and the restore, what a
process synced survives and what it did not sync is lost, as in a power cut.

A child process, run with the shim preloaded, writes files in the ways the members do (appends
synced with fsync or fdatasync, unsynced appends, a file created and never synced, a file
truncated on open, a synced file renamed, an ftruncate, a file reserved with fallocate and
written inside and past its reserved length) and kills itself with SIGKILL. The test
checks that kill -9 alone lost nothing (which is why the model is needed), and that after the
restore each file holds exactly its synced bytes, while a file outside the directory keeps
everything; in a reserved file, the unsynced bytes inside the reserved length read as zeros
again. It also checks that the shim stops a process that does what the model cannot express
(overwriting bytes in place, also in a reserved file, an O_DSYNC file) rather than model it
wrongly.
Exit 0 when every check passes.
"""

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile

import powerloss

# name -> (everything written, what was synced): the contents expected before and after restore.
EXPECTED = {
    "fsync.log": (b"synced-1synced-2unsynced", b"synced-1synced-2"),
    "fdatasync.log": (b"headerbody-unsynced", b"header"),
    "never-synced.log": (b"nothing durable", b""),
    "truncated-on-open.log": (b"new, unsynced", b""),
    "renamed.log": (b"synced before the renameafter", b"synced before the rename"),
    "ftruncated.log": (b"0123456789abcunsynced", b"0123456789abc"),
    "reserved.log": (b"synced-in-reserve" + b"unsynced-in-reserve" + bytes(28),
                     b"synced-in-reserve" + bytes(47)),
    "reserved-then-past.log": (b"0123456789abcdef" + b"past", b"0123456789abcdef"),
}
OUTSIDE = b"outside the directory, never synced"


def write_files(data_dir, outside_path):
    """The child: leaves the files of EXPECTED behind, then dies by SIGKILL."""
    def opened(name, flags=os.O_WRONLY | os.O_CREAT | os.O_APPEND):
        return os.open(os.path.join(data_dir, name), flags, 0o600)

    fd = opened("fsync.log")
    os.write(fd, b"synced-1")
    os.fsync(fd)
    os.write(fd, b"synced-2")
    os.fsync(fd)
    os.write(fd, b"unsynced")

    fd = opened("fdatasync.log")
    os.write(fd, b"header")
    os.fdatasync(fd)
    os.write(fd, b"body-unsynced")

    fd = opened("never-synced.log")
    os.write(fd, b"nothing durable")

    fd = opened("truncated-on-open.log")
    os.write(fd, b"old, synced")
    os.fsync(fd)
    os.close(fd)
    fd = opened("truncated-on-open.log", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"new, unsynced")

    fd = opened("renamed.tmp")
    os.write(fd, b"synced before the rename")
    os.fsync(fd)
    os.rename(os.path.join(data_dir, "renamed.tmp"), os.path.join(data_dir, "renamed.log"))
    os.write(fd, b"after")

    fd = opened("ftruncated.log")
    os.write(fd, b"0123456789abcdef")
    os.fsync(fd)
    os.ftruncate(fd, 13)
    os.fsync(fd)
    os.write(fd, b"unsynced")

    fd = opened("reserved.log", os.O_WRONLY | os.O_CREAT)
    reserve(fd, 64)
    os.pwrite(fd, b"synced-in-reserve", 0)
    os.fdatasync(fd)
    os.pwrite(fd, b"unsynced-in-reserve", 17)

    fd = opened("reserved-then-past.log", os.O_WRONLY | os.O_CREAT)
    reserve(fd, 16)
    os.pwrite(fd, b"0123456789abcdef", 0)
    os.fsync(fd)
    os.pwrite(fd, b"past", 16)

    with open(outside_path, "wb") as outside:
        outside.write(OUTSIDE)
    os.kill(os.getpid(), signal.SIGKILL)


def reserve(fd, length):
    """fallocate(2) mode 0 through the dynamic linker, where the shim sees it (Python's
    os.posix_fallocate goes to the system call inside libc)."""
    fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if fallocate(fd, 0, 0, length) != 0:
        raise OSError(ctypes.get_errno(), "fallocate")


def write_unmodelled(data_dir, how):
    """A child that does what the model cannot express; the shim must stop it (SIGABRT)."""
    path = os.path.join(data_dir, f"{how}.log")
    if how == "overwrite":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"0123456789")
        os.pwrite(fd, b"X", 3)
    elif how == "reserved-overwrite":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        reserve(fd, 64)
        os.pwrite(fd, b"0123456789", 0)
        os.pwrite(fd, b"X", 3)
    elif how == "dsync":
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)


def contents(path):
    with open(path, "rb") as file:
        return file.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shim", help="the shim library (powerloss_shim.so)")
    parser.add_argument("--child", nargs=2, metavar=("DATA_DIR", "OUTSIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--unmodelled-child", nargs=2, metavar=("DATA_DIR", "HOW"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        write_files(*args.child)
        return 1  # not reached
    if args.unmodelled_child:
        write_unmodelled(*args.unmodelled_child)
        return 0
    if not args.shim:
        parser.error("--shim is required")

    failures = []
    with tempfile.TemporaryDirectory(prefix="powerloss-test-") as work:
        data_dir = os.path.join(work, "data")
        os.mkdir(data_dir)
        log_path = os.path.join(work, "powerloss.log")
        outside_path = os.path.join(work, "outside.log")
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", data_dir, outside_path],
            env={**os.environ, **powerloss.environment(args.shim, data_dir, log_path)})
        if child.returncode != -signal.SIGKILL:
            print(f"FAIL: the child exited with {child.returncode}, not by SIGKILL")
            return 1
        for name, (written, _) in EXPECTED.items():
            found = contents(os.path.join(data_dir, name))
            if found != written:
                failures.append(f"before the restore, {name} holds {found!r}, not {written!r}")
        lost = powerloss.restore(data_dir, log_path)
        for name, (_, synced) in EXPECTED.items():
            found = contents(os.path.join(data_dir, name))
            if found != synced:
                failures.append(f"after the restore, {name} holds {found!r}, not {synced!r}")
        if contents(outside_path) != OUTSIDE:
            failures.append("the file outside the directory changed")
        # Bytes cut off, and bytes of data turned back into zeros.
        expected_lost = sum(len(w) - len(s) + sum(a != b for a, b in zip(w, s))
                            for w, s in EXPECTED.values())
        if lost != expected_lost:
            failures.append(f"the restore reports {lost} bytes lost, not {expected_lost}")
        # A second restore (a second power cut with nothing written since) loses nothing more.
        if powerloss.restore(data_dir, log_path) != 0:
            failures.append("a second restore cut more")
        for how in ("overwrite", "reserved-overwrite", "dsync"):
            child = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--unmodelled-child", data_dir, how],
                env={**os.environ, **powerloss.environment(args.shim, data_dir, log_path)},
                capture_output=True, text=True)
            if child.returncode != -signal.SIGABRT or "powerloss shim:" not in child.stderr:
                failures.append(f"the shim let a child {how} (exit {child.returncode}, "
                                f"stderr {child.stderr.strip()!r})")
    for failure in failures:
        print("FAIL:", failure)
    if not failures:
        print(f"ok: {len(EXPECTED)} files, {expected_lost} unsynced bytes lost, "
              "every synced byte kept; overwrites and an O_DSYNC open stopped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
