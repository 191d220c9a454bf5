"""The restore half of the power-loss model (the other half is powerloss_shim.cc).

A process run with the shim preloaded (`environment()`) logs how many bytes of each file under
its data directory an fsync made durable. After the process is killed with SIGKILL, `restore()`
cuts each of those files back to that size: what was written but never synced is lost, as it
would be by a power cut at the moment of the kill, and what was synced survives. In a file
reserved with fallocate, what is lost within the reserved length turns back into zeros instead,
as unwritten reserved blocks read after a power cut; only what lies past it is cut.
"""

import os


def environment(shim, data_dir, log_path):
    """The environment variables that put a process's data_dir under the model. The shim needs a
    canonical absolute directory, since it compares it with the paths the kernel reports."""
    return {"LD_PRELOAD": os.path.abspath(shim), "SYNOD_POWERLOSS_DIR": os.path.realpath(data_dir),
            "SYNOD_POWERLOSS_LOG": os.path.abspath(log_path)}


def durable_sizes(log_path):
    """From the shim's log: (device, inode) -> bytes durable, and (device, inode) -> reserved
    length. A sync makes the size it names durable (concurrent syncs may log out of order, so the
    largest counts); a cut (creation, truncation) bounds what is durable, and what is reserved,
    from then on; a reserve names the length a file was reserved up to."""
    durable = {}
    reserved = {}
    if not os.path.exists(log_path):
        return durable, reserved
    with open(log_path) as log:
        for line in log:
            kind, device, inode, size = line.split()
            key, size = (int(device), int(inode)), int(size)
            if kind == "sync":
                durable[key] = max(durable.get(key, 0), size)
            elif kind == "cut":
                durable[key] = min(durable.get(key, size), size)
                if key in reserved:
                    reserved[key] = min(reserved[key], size)
            elif kind == "reserve":
                reserved[key] = max(reserved.get(key, 0), size)
            else:
                raise ValueError(f"{log_path}: unknown record {line!r}")
    return durable, reserved


def restore(data_dir, log_path):
    """Cuts every file under data_dir back to its durable size; the process must be dead. Then
    rewrites the log to name what is on disk now, which is all durable. Returns the number of
    bytes cut away."""
    durable, reserved = durable_sizes(log_path)
    lost_bytes = 0
    now_durable = []
    for directory, _, names in os.walk(data_dir):
        for name in names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            key = (info.st_dev, info.st_ino)
            size = info.st_size
            kept = durable.get(key, size)
            # Inside the reserved length, lost bytes read as zeros; the length stays.
            zeroed_to = min(reserved.get(key, 0), size)
            if kept < zeroed_to:
                with open(path, "r+b") as file:
                    file.seek(kept)
                    old = file.read(zeroed_to - kept)
                    lost_bytes += len(old) - old.count(0)
                    file.seek(kept)
                    file.write(bytes(zeroed_to - kept))
            if size > max(kept, zeroed_to):
                os.truncate(path, max(kept, zeroed_to))
                lost_bytes += size - max(kept, zeroed_to)
                size = max(kept, zeroed_to)
            if zeroed_to > kept:
                now_durable.append(f"reserve {key[0]} {key[1]} {zeroed_to}\n")
                now_durable.append(f"sync {key[0]} {key[1]} {kept}\n")
            else:
                now_durable.append(f"sync {key[0]} {key[1]} {size}\n")
    temporary = log_path + ".new"
    with open(temporary, "w") as log:
        log.writelines(now_durable)
    os.replace(temporary, log_path)
    return lost_bytes
