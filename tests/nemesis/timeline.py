"""The nemesis run's timeline picture: faults as bands, operation latency as points over time."""

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

OUTCOME_STYLE = {"ok": ("tab:green", "ok"), "unknown": ("tab:orange", "unknown (no answer)"),
                 "failed": ("tab:gray", "failed")}
FAULT_COLOURS = {"kill": "tab:red", "pause": "tab:purple", "loss": "tab:olive",
                 "delay": "tab:cyan", "fsync": "tab:brown", "clock": "tab:pink"}


def draw(path, operations, faults, started_ns):
    """Writes the picture (format from the file name: .svg or .png)."""
    figure, (bands, latency) = plt.subplots(
        2, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    kinds = sorted({fault["kind"] for fault in faults})
    for fault in faults:
        row = kinds.index(fault["kind"])
        start = (fault["start"] - started_ns) / 1e9
        bands.broken_barh([(start, (fault["end"] - fault["start"]) / 1e9)], (row - 0.4, 0.8),
                          color=FAULT_COLOURS.get(fault["kind"], "tab:blue"), alpha=0.7)
    bands.set_yticks(range(len(kinds)), kinds)
    bands.set_title("faults")

    for outcome, (colour, label) in OUTCOME_STYLE.items():
        chosen = [op for op in operations if op["outcome"] == outcome]
        if not chosen:
            continue
        latency.scatter([(op["invoke"] - started_ns) / 1e9 for op in chosen],
                        [max(op["complete"] - op["invoke"], 1000) / 1e6 for op in chosen],
                        s=3, color=colour, label=f"{label}: {len(chosen)}",
                        rasterized=True)  # a long run has millions of points: one image
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("seconds since the first fault could strike")
    latency.legend(loc="upper right", markerscale=4)
    latency.set_title("client operations (put, get, delete, compare-and-set)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
