#!/usr/bin/env python3
"""ONNX Runtime's time per image on tiny-yolov3 (the reference for `bench_f32`).

Runs the full bundled model (decode/NMS tail included) with the two YOLO heads added as extra
graph outputs, on the bundled preprocessed input, with a fixed number of intra-op threads.
Prints `ort_ms_per_image <median wall ms>`, the minimum and the process CPU time per run, and the
same for the graph cut at the heads with onnx.utils.Extractor (`ort_heads_only_*`, the exact
computation bench_f32 times).
Needs: pip install onnxruntime onnx numpy (not a dependency of the product or of the tests).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "assets/models/tiny-yolov3-11.onnx")
INPUT = os.path.join(ROOT, "assets/reference/tiny-yolov3/yolov3_tiny_in_f32.npz")
HEADS = ["convolution_output1", "convolution_output"]


def session(model, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def median_ms(sess, feeds, outputs, warmup, runs):
    """(median wall ms, min wall ms, process CPU ms per run) over `runs` runs after warm-up."""
    for _ in range(warmup):
        sess.run(outputs, feeds)
    times = []
    cpu0 = time.process_time()
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(outputs, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    cpu = (time.process_time() - cpu0) * 1e3 / runs
    return statistics.median(times), min(times), cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    x = np.load(INPUT)["input_1"].astype(np.float32)
    full = onnx.load(MODEL)
    inferred = onnx.shape_inference.infer_shapes(full)
    infos = {v.name: v for v in inferred.graph.value_info}
    for h in HEADS:
        if h in infos:
            full.graph.output.append(infos[h])
        else:
            full.graph.output.append(onnx.helper.make_tensor_value_info(h, onnx.TensorProto.FLOAT, None))
    sess = session(full, args.threads)
    feeds = {"input_1": x}
    for i in sess.get_inputs():
        if i.name == "image_shape":
            feeds["image_shape"] = np.array([[416, 416]], dtype=np.float32)
    ms, ms_min, cpu = median_ms(sess, feeds, HEADS, args.warmup, args.runs)

    cut = onnx.utils.Extractor(full).extract_model(["input_1"], HEADS)
    sess_cut = session(cut, args.threads)
    ms_cut, ms_cut_min, cpu_cut = median_ms(sess_cut, {"input_1": x}, HEADS, args.warmup, args.runs)

    print(f"ort_version {ort.__version__}")
    print(f"ort_threads {args.threads}")
    print(f"ort_ms_per_image {ms:.3f}")
    print(f"ort_min_ms_per_image {ms_min:.3f}")
    print(f"ort_cpu_ms_per_image {cpu:.3f}")
    print(f"ort_heads_only_ms_per_image {ms_cut:.3f}")
    print(f"ort_heads_only_min_ms_per_image {ms_cut_min:.3f}")
    print(f"ort_heads_only_cpu_ms_per_image {cpu_cut:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
