"""Out-of-core pipeline end to end on a large 3D volume: predict, label, measure, with peak RSS per stage.

Standalone script::

    python -m benchmarks.bench_ooc [--shape 512x1024x1024] [--work DIR] [--threads 1] [--rois]
                                   [--skip-predict] [--compare-dask-image 64] [--keep]

Stages, each in its own fresh child process (so that its peak RSS, ``ru_maxrss`` / ``VmHWM``, is its own):

1. ``write``: a synthetic uint8 volume ``(1, *shape)`` as zarr (chunks 64x256x256): bright 6^3 cubes in
   15 % of the cells of an 8^3 grid, each straddling multiples of 8 (so objects cross chunk and block
   borders), plus noise, written slab by slab;
2. ``predict``: ``unet.predict.predict_files(ckpt, volume.zarr, out, out_of_core_mib=0)`` with a tiny
   untrained 3D UNet (depth 1, 2 features; weights set by hand to averaging filters and a threshold, so
   that the foreground follows the bright objects; the cost is that of any weights),
   i.e. streaming min/max, tiles and ``<stem>_probabilities.zarr`` (K = 2, float32).
   ``--skip-predict`` writes probabilities straight from the volume instead (for label/measure timings
   of sizes where CPU prediction takes too long);
3. ``label``: :func:`unet.ooc.label_out_of_core` (arg-max, components, min_size 0, uint32 labels zarr);
4. ``measure``: :func:`unet.ooc.measure_out_of_core` with the image's intensities and element size, and the
   objects CSV (:func:`unet.io.write_csv`);
5. ``points``: :func:`unet.ooc.detection_points_out_of_core` (probability-weighted) and the points CSV;
6. ``rois`` (with ``--rois``): :func:`unet.ooc.write_rois_out_of_core`.

``--compare-dask-image N`` also labels the first N slices of the class map with ``dask_image.ndmeasure.label``
(over zarr, same chunks, synchronous scheduler) and with :func:`unet.ooc.label_out_of_core`, each in a child,
for time and peak RSS (needs ``pip install dask-image``).

Each stage's peak RSS is reported as is and above the child's RSS after its imports (the interpreter, numpy,
zarr, and torch for ``predict``), against the sizes of the uint8 volume, the float32 probabilities and the
uint32 labels. Writes ``benchmarks/results/bench_ooc.txt``. Timings depend on machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, child_env

MIB = 2**20
ELEMENT_SIZE = (1.0, 0.5, 0.5)
STEM = "volume"


def _rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc (ru_maxrss where /proc is missing)."""
    cur = peak = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (cur if cur is not None else ru), (peak if peak is not None else ru)


# ------------------------------------------------------------------------------------------------ stages
def _write_volume(work: Path, shape: tuple[int, int, int]) -> dict:
    from unet import io

    rng = np.random.default_rng(0)
    slab = 64
    idx = [np.arange(s) + 3 for s in shape]  # cube c covers [8c - 3, 8c + 3): it straddles a multiple of 8
    cell = [i // 8 for i in idx]
    inside = [(i % 8) < 6 for i in idx]
    occupied = rng.random(tuple(int(c[-1]) + 1 for c in cell)) < 0.15
    attrs = {"axes": "CZYX", "element_size": list(ELEMENT_SIZE)}
    with io.atomic_zarr(
        work / f"{STEM}.zarr", (1, *shape), chunks=(1, slab, 256, 256), dtype=np.uint8, attrs=attrs
    ) as z:
        for z0 in range(0, shape[0], slab):
            z1 = min(z0 + slab, shape[0])
            m = occupied[cell[0][z0:z1]][:, cell[1]][:, :, cell[2]]
            m &= inside[0][z0:z1, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
            noise = rng.integers(0, 40, m.shape, dtype=np.uint8)
            z[0, z0:z1] = np.where(m, np.uint8(170), np.uint8(40)) + noise
    return {"bright_cubes": int(occupied.sum())}


def _checkpoint(work: Path) -> Path:
    """Tiny 3D UNet (depth 1, 2 features) with hand-set weights instead of training: every (up-)convolution
    averages its inputs, so the last features are a smoothed intensity, and the head calls a voxel
    foreground where that exceeds 0.4 of the normalised range (objects follow the volume's)."""
    import math

    import torch

    from unet.models.card import CARD_KEY, ModelCard
    from unet.models.unet import UNet
    from unet.tasks import SegmentationTask

    net = UNet(in_channels=1, spatial_dims=3, depth=1, base_features=2).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d) and m is not net.head:
                fan_in = m.in_channels * (math.prod(m.kernel_size) if isinstance(m, torch.nn.Conv3d) else 1)
                m.weight.fill_(1.0 / fan_in)
                m.bias.zero_()
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.weight[1] = 1.0 / net.head.in_channels
        net.head.bias[1] = -0.4
    card = ModelCard(net.config, SegmentationTask().config(), None, "minmax")
    path = work / "tiny.ckpt"
    state = {"net." + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, CARD_KEY: card.to_dict()}, path)
    return path


def _predict(work: Path, args: argparse.Namespace) -> dict:
    import torch

    from unet.predict import predict_files

    torch.set_num_threads(args.threads)
    ckpt = _checkpoint(work)
    t0 = time.perf_counter()
    predict_files(
        ckpt,
        work / f"{STEM}.zarr",
        work / "out",
        out_of_core_mib=0,
        memory_budget_mib=args.budget_mib,
        progress=False,
        overwrite=True,
    )
    return {"seconds_without_checkpoint": time.perf_counter() - t0}


def _fake_probabilities(work: Path) -> dict:
    """Probabilities straight from the volume (a logistic of the intensity), chunked as prediction would."""
    from unet import io

    src = io.open_zarr(work / f"{STEM}.zarr")
    shape = tuple(src.shape[1:])
    attrs = {"axes": "CZYX", "element_size": list(ELEMENT_SIZE), "content": "synthetic probabilities"}
    with io.atomic_zarr(
        work / "out" / f"{STEM}_probabilities.zarr", (2, *shape), chunks=(2, 64, 128, 128), attrs=attrs
    ) as z:
        for z0 in range(0, shape[0], 16):  # 16 slices at a time: a few hundred MiB at 1024x1024
            v = np.asarray(src[0, z0 : z0 + 16]).astype(np.float32)
            p1 = 1 / (1 + np.exp(-(v - 110) / 20))
            z[:, z0 : z0 + 16] = np.stack([1 - p1, p1])
    return {}


def _parse(shape: str) -> tuple[int, ...]:
    return tuple(int(s) for s in shape.lower().split("x"))


def _label(work: Path, args: argparse.Namespace) -> dict:
    from unet import ooc

    chunks = None if args.chunks is None else _parse(args.chunks)
    n, class_of = ooc.label_out_of_core(
        work / "out" / f"{STEM}_probabilities.zarr", work / "out" / f"{STEM}_labels.zarr", chunks=chunks
    )
    np.save(work / "class_of.npy", class_of)
    return {"objects": n}


def _measure(work: Path, args: argparse.Namespace) -> dict:
    from unet import io, ooc

    image = io.open_image(work / f"{STEM}.zarr", spatial_dims=3)
    class_of = np.load(work / "class_of.npy")
    rows = ooc.measure_out_of_core(
        work / "out" / f"{STEM}_labels.zarr", image.array, element_size=image.element_size, class_of=class_of
    )
    io.write_csv(work / "out" / f"{STEM}_objects.csv", rows)
    return {"rows": len(rows)}


def _points(work: Path, args: argparse.Namespace) -> dict:
    from unet import io, ooc

    class_of = np.load(work / "class_of.npy")
    points, classes = ooc.detection_points_out_of_core(
        work / "out" / f"{STEM}_labels.zarr", work / "out" / f"{STEM}_probabilities.zarr", class_of
    )
    io.write_points_csv(work / "out" / f"{STEM}_points.csv", points, classes, ELEMENT_SIZE, napari=True)
    return {"points": len(points)}


def _rois(work: Path, args: argparse.Namespace) -> dict:
    from unet import ooc

    n = ooc.write_rois_out_of_core(work / "out" / f"{STEM}_labels.zarr", work / "out" / f"{STEM}_rois.zip")
    return {"rois": n}


def _sub_class_map(work: Path, slices: int, chunks: tuple[int, ...]) -> Path:
    """The first ``slices`` slices of the probabilities as a boolean foreground zarr (for the comparison)."""
    from unet import io

    p = io.open_zarr(work / "out" / f"{STEM}_probabilities.zarr")
    shape = (min(slices, p.shape[1]), *p.shape[2:])
    path = work / "sub_mask.zarr"
    if not path.exists():
        with io.atomic_zarr(path, shape, chunks=chunks, dtype=bool) as z:
            for z0 in range(0, shape[0], 64):
                blk = np.asarray(p[:, z0 : min(z0 + 64, shape[0])])
                z[z0 : z0 + blk.shape[1]] = blk[1] > blk[0]
    return path


def _dask_image(work: Path, args: argparse.Namespace) -> dict:
    import dask
    import dask.array as da
    import zarr
    from dask_image import ndmeasure

    from unet import io

    src = io.open_zarr(work / "sub_mask.zarr")
    out = zarr.open_array(
        str(work / "sub_dask_labels.zarr"), mode="w", shape=src.shape, chunks=src.chunks, dtype=np.int32
    )
    with dask.config.set(scheduler="synchronous"):
        lab, n = ndmeasure.label(da.from_zarr(src), structure=np.ones((3, 3, 3), bool))
        _, n = dask.compute(da.store(lab.astype(np.int32), out, lock=False, compute=False), n)
    return {"objects": int(n), "voxels": int(np.prod(src.shape))}


def _ours_sub(work: Path, args: argparse.Namespace) -> dict:
    from unet import io, ooc

    src = io.open_zarr(work / "sub_mask.zarr")
    n, _ = ooc.label_out_of_core(src, work / "sub_ooc_labels.zarr", chunks=tuple(src.chunks))
    return {"objects": n, "voxels": int(np.prod(src.shape))}


STAGES = {
    "write": lambda w, a: _write_volume(w, a.shape_tuple),
    "predict": _predict,
    "fake-probabilities": lambda w, a: _fake_probabilities(w),
    "label": _label,
    "measure": _measure,
    "points": _points,
    "rois": _rois,
    "dask-image": _dask_image,
    "ours-on-subvolume": _ours_sub,
}


def _child(stage: str, work: Path, args: argparse.Namespace) -> None:
    import zarr  # noqa: F401  (imported before the baseline, as every stage needs it)

    from unet import io, ooc  # noqa: F401

    if stage == "predict":
        import torch  # noqa: F401

        from unet import predict  # noqa: F401
    if stage == "dask-image":
        import dask_image.ndmeasure  # noqa: F401
    base, _ = _rss_mib()
    t0 = time.perf_counter()
    info = STAGES[stage](work, args)
    seconds = time.perf_counter() - t0
    _, peak = _rss_mib()
    print(
        "RESULT "
        + json.dumps({"stage": stage, "seconds": seconds, "base_mib": base, "peak_mib": peak, **info})
    )


def _run_child(stage: str, argv: list[str]) -> dict:
    env = child_env()
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "benchmarks.bench_ooc", *argv, "--child", stage]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"stage {stage} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    result = json.loads(lines[-1][len("RESULT ") :])
    print(
        f"  {stage:18s} {result['seconds']:8.1f} s  peak RSS {result['peak_mib']:8.1f} MiB "
        f"(+{result['peak_mib'] - result['base_mib']:.1f} over {result['base_mib']:.0f} after imports)",
        flush=True,
    )
    return result


def _du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / MIB if path.exists() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="512x1024x1024", help="volume shape ZxYxX (default 512x1024x1024)")
    parser.add_argument("--work", default=None, help="working directory (default: a temporary one, removed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for prediction")
    parser.add_argument("--budget-mib", type=float, default=512, help="tile memory budget of prediction")
    parser.add_argument("--chunks", default=None, help="labelling block ZxYxX (default: unet.ooc's)")
    parser.add_argument("--skip-predict", action="store_true", help="synthetic probabilities, no network")
    parser.add_argument("--rois", action="store_true", help="also write the ImageJ ROI set")
    parser.add_argument("--compare-dask-image", type=int, default=0, metavar="SLICES", help="see above")
    parser.add_argument("--compare-chunks", default="64x256x256", help="chunks ZxYxX of that comparison")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "bench_ooc.txt"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.shape_tuple = _parse(args.shape)
    if len(args.shape_tuple) != 3:
        parser.error("--shape must be ZxYxX")
    if args.child:
        _child(args.child, Path(args.work), args)
        return

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_ooc_"))
    work.mkdir(parents=True, exist_ok=True)
    argv = [
        "--shape", args.shape, "--work", str(work), "--threads", str(args.threads),
        "--budget-mib", str(args.budget_mib),
    ] + (["--chunks", args.chunks] if args.chunks else [])  # fmt: skip
    voxels = int(np.prod(args.shape_tuple))
    sizes = {"volume uint8": voxels / MIB, "probabilities float32 (K=2)": 8 * voxels / MIB}
    sizes["labels uint32"] = 4 * voxels / MIB
    print(f"shape {args.shape_tuple} = {voxels / 1e6:.1f} Mvoxel in {work}", flush=True)
    stages = ["write", "fake-probabilities" if args.skip_predict else "predict", "label", "measure", "points"]
    if args.rois:
        stages.append("rois")
    results = []
    try:
        for stage in stages:
            results.append(_run_child(stage, argv))
        compare = []
        if args.compare_dask_image:
            _sub_class_map(work, args.compare_dask_image, _parse(args.compare_chunks))
            for stage in ("ours-on-subvolume", "dask-image"):
                compare.append(_run_child(stage, argv))
        from unet import io

        prob_chunks = tuple(io.open_zarr(work / "out" / f"{STEM}_probabilities.zarr").chunks)
        disk = {
            "probabilities zarr": _du_mib(work / "out" / f"{STEM}_probabilities.zarr"),
            "labels zarr": _du_mib(work / "out" / f"{STEM}_labels.zarr"),
        }
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)

    import torch
    import zarr

    prob_mib = sizes["probabilities float32 (K=2)"]
    lines = [
        f"# bench_ooc: out-of-core predict -> label -> measure, shape {'x'.join(map(str, args.shape_tuple))}",
        "",
        f"command: OMP_NUM_THREADS=1 python -m benchmarks.bench_ooc --shape {args.shape}"
        + (" --skip-predict" if args.skip_predict else "")
        + (" --rois" if args.rois else "")
        + (f" --compare-dask-image {args.compare_dask_image}" if args.compare_dask_image else "")
        + (f" --compare-chunks {args.compare_chunks}" if args.compare_dask_image else "")
        + (f" --budget-mib {args.budget_mib:g}" if args.budget_mib != 512 else "")
        + (f" --chunks {args.chunks}" if args.chunks else ""),
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}; python {platform.python_version()}, numpy {np.__version__}, "
        f"zarr {zarr.__version__}, torch {torch.__version__} ({args.threads} thread(s)); OMP_NUM_THREADS=1",
        f"sizes: {voxels / 1e6:.1f} Mvoxel; " + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items()),
        "on disk: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in disk.items()),
        f"probabilities chunks (the prediction tile stride): {prob_chunks}",
        "prediction: "
        + (
            "skipped (--skip-predict: probabilities computed from the intensities)"
            if args.skip_predict
            else f"tiny untrained 3D UNet (depth 1, 2 features, averaging weights), tile budget "
            f"{args.budget_mib:g} MiB, CPU"
        ),
        "peak RSS: VmHWM of a fresh child process per stage; 'over imports': minus its RSS after the imports",
        "",
        "| stage | wall s | peak RSS MiB | over imports MiB | over imports / probabilities | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        extra = {k: v for k, v in r.items() if k not in ("stage", "seconds", "base_mib", "peak_mib")}
        over = r["peak_mib"] - r["base_mib"]
        lines.append(
            f"| {r['stage']} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {over:.0f} | {over / prob_mib:.3f} "
            + "| "
            + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items())
            + " |"
        )
    if compare:
        lines += [
            "",
            f"labelling the first {args.compare_dask_image} slices (foreground mask, bool zarr, chunks "
            f"{args.compare_chunks}, both with these chunks as blocks):",
            "",
            "| method | wall s | peak RSS MiB | over imports MiB | objects |",
            "|---|---|---|---|---|",
        ]
        for r in compare:
            name = "unet.ooc.label_out_of_core" if r["stage"] == "ours-on-subvolume" else "dask_image label"
            over = r["peak_mib"] - r["base_mib"]
            lines.append(
                f"| {name} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {over:.0f} | {r['objects']} |"
            )
    text = "\n".join(lines) + "\n"
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
