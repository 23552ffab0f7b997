"""Serving the quick-start servable: torch (``SimilarityModel``) against ONNX Runtime
(``OnnxSimilarityModel``) on CPU (not a test).

In one run: builds (or takes, with ``--servable``) the quick-start servable, exports it to
ONNX, then runs each runtime in its own fresh process (so resident memory is that runtime's
alone; the ONNX process never imports torch) with the same number of threads, and prints

* load time, single-query latency (p50 and p95 over ``--repeats`` queries) and the latency
  of a batch of ``--batch`` texts (p50);
* resident memory after serving (``VmRSS``) and its peak (``VmHWM``);
* ratios ONNX / torch, and the parity of the two runtimes' vectors (cosine, max abs).

Run: ``.venv/bin/python -m benchmarks.onnx`` (``--servable examples/quick_start_encoders``
for a trained one; the default is the quick start's model with its untrained head).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from examples.cli_types import positive_int
from benchmarks._memory import current_mib, peak_mib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS_FILE = os.path.join(REPO_ROOT, "examples", "quick_start_data", "test.jsonl")


def read_texts() -> list:
    with open(TEXTS_FILE, encoding="utf-8") as file:
        return [json.loads(line)["text"] for line in file if line.strip()]


def serve(runtime: str, path: str, threads: int, repeats: int, batch: int, out: str) -> None:
    """Child process: load with ``runtime``, time queries, report memory, save vectors."""
    texts = read_texts()
    started = time.perf_counter()
    if runtime == "torch":
        import torch

        from quaterion_models import SimilarityModel

        torch.set_num_threads(threads)
        model = SimilarityModel.load(path)
    else:
        import onnxruntime

        from quaterion_models.onnx import OnnxSimilarityModel

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        model = OnnxSimilarityModel.load(path, session_options=options)
    load_s = time.perf_counter() - started
    model.encode(texts[:batch], batch_size=batch)  # warm-up
    single = []
    for i in range(repeats):
        clock = time.perf_counter()
        model.encode([texts[i % len(texts)]])
        single.append(time.perf_counter() - clock)
    batched = []
    for i in range(max(3, repeats // 10)):
        chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
        clock = time.perf_counter()
        model.encode(chunk, batch_size=batch)
        batched.append(time.perf_counter() - clock)
    np.save(out, model.encode(texts, batch_size=batch))
    report = {
        "load_s": load_s,
        "single_p50_ms": 1000 * statistics.median(single),
        "single_p95_ms": 1000 * float(np.percentile(single, 95)),
        "batch_p50_ms": 1000 * statistics.median(batched),
        "rss_mib": current_mib(),
        "peak_mib": peak_mib(),
        "torch_imported": "torch" in sys.modules,
    }
    print(json.dumps(report))


def prepare(servable: str, root: str) -> tuple:
    """The servable directory (built from the quick start's model if not given) and its
    ONNX export."""
    from quaterion_models import SimilarityModel

    if not servable:
        from examples.quick_start import build_model_class, default_encoder_path

        servable = os.path.join(root, "servable")
        build_model_class()(default_encoder_path()).save_servable(servable)
    exported = os.path.join(root, "onnx")
    SimilarityModel.load(servable).export_onnx(exported)
    return servable, exported


def run_child(runtime: str, path: str, args: argparse.Namespace, out: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.onnx", "--child", runtime, "--servable", path,
               "--threads", str(args.threads), "--repeats", str(args.repeats),
               "--batch", str(args.batch), "--out", out]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"{runtime} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servable", default="", help="servable directory (default: build one)")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="CPU threads of both runtimes"
    )
    parser.add_argument("--repeats", type=positive_int, default=200, help="single queries timed")
    parser.add_argument("--batch", type=positive_int, default=64, help="texts per batch")
    parser.add_argument("--child", choices=("torch", "onnx"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        serve(args.child, args.servable, args.threads, args.repeats, args.batch, args.out)
        return {}
    with tempfile.TemporaryDirectory() as root:
        servable, exported = prepare(args.servable, root)
        results, vectors = {}, {}
        for runtime, path in (("torch", servable), ("onnx", exported)):
            out = os.path.join(root, f"{runtime}.npy")
            results[runtime] = run_child(runtime, path, args, out)
            vectors[runtime] = np.load(out)
    torch_v, onnx_v = vectors["torch"], vectors["onnx"]
    cosine = (
        (torch_v * onnx_v).sum(1) / np.linalg.norm(torch_v, axis=1) / np.linalg.norm(onnx_v, axis=1)
    )
    print(
        f"quick-start servable, {len(torch_v)} texts, {args.threads} thread(s), batch {args.batch}"
    )
    print(f"{'':24}{'torch':>10}{'onnx':>10}{'onnx/torch':>12}")
    rows = [("load (s)", "load_s"), ("single query p50 (ms)", "single_p50_ms"),
            ("single query p95 (ms)", "single_p95_ms"), (f"batch of {args.batch} p50 (ms)", "batch_p50_ms"),
            ("RSS after serving (MiB)", "rss_mib"), ("peak RSS (MiB)", "peak_mib")]  # fmt: skip
    for label, key in rows:
        t, o = results["torch"][key], results["onnx"][key]
        print(f"{label:24}{t:10.1f}{o:10.1f}{o / t:12.2f}")
    print(f"onnx process imported torch: {results['onnx']['torch_imported']}")
    print(
        f"parity: min cosine {cosine.min():.7f}, max abs diff {np.abs(torch_v - onnx_v).max():.2e}"
    )
    return {"results": results, "min_cosine": float(cosine.min())}


if __name__ == "__main__":
    main()
