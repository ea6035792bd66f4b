#!/usr/bin/env bash
# The walkthrough of ../shared/reference/mix_precision.rst on the bundled tiny-yolov3 and COCO
# images: float model -> calibration -> INT8 bmodel -> mixed-precision search -> mixed bmodel, then
# detection on one photo with the .onnx, the INT8 and the mixed bmodel, printed side by side.
# Usage: bash scripts/walkthrough.sh [WORKDIR]   (default: work/walkthrough)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$root/work/walkthrough}"
cargo build --release -q -p host-tools --manifest-path "$root/Cargo.toml"
bin="$root/target/release"
mkdir -p "$work"
cd "$work"
model="$root/assets/models/tiny-yolov3-11.onnx"
data="$root/assets/images/COCO2017"
img="$data/000000124798.jpg"
set -x
"$bin/model_transform" --model_name yolov3_tiny --model_def "$model" \
  --input_shapes [[1,3,416,416]] --scale 0.0039216,0.0039216,0.0039216 --pixel_format rgb \
  --keep_aspect_ratio --pad_value 128 --output_names=convolution_output1,convolution_output \
  --mlir yolov3_tiny.mlir
"$bin/run_calibration" yolov3_tiny.mlir --dataset "$data" --input_num 100 -o yolov3_cali_table
"$bin/model_deploy" --mlir yolov3_tiny.mlir --quantize INT8 --calibration_table yolov3_cali_table \
  --chip bm1684x --model yolov3_int8.bmodel
"$bin/run_qtable" yolov3_tiny.mlir --dataset "$data" --calibration_table yolov3_cali_table \
  --min_layer_cos 0.999 --expected_cos 0.9999 --chip bm1684x -o yolov3_qtable
"$bin/model_deploy" --mlir yolov3_tiny.mlir --quantize INT8 --calibration_table yolov3_cali_table \
  --quantize_table yolov3_qtable --chip bm1684x --model yolov3_mix.bmodel
"$bin/detect_yolov3" --model "$model" --input "$img" --output yolov3_onnx.jpg > onnx.txt
"$bin/detect_yolov3" --model yolov3_int8.bmodel --input "$img" --output yolov3_int8.jpg > int8.txt
"$bin/detect_yolov3" --model yolov3_mix.bmodel --input "$img" --output yolov3_mix.jpg > mix.txt
set +x
echo
printf '%-16s %-16s %-16s\n' "ONNX (F32)" "INT8 bmodel" "mixed bmodel"
paste -d'|' onnx.txt int8.txt mix.txt | awk -F'|' '{printf "%-16s %-16s %-16s\n", $1, $2, $3}'
echo
echo "pictures: $work/yolov3_onnx.jpg $work/yolov3_int8.jpg $work/yolov3_mix.jpg"
echo
echo "Agreement with the float model over the 90 photos the search did not use:"
"$bin/compare_detections" --reference "$model" --dataset "$data" --skip 10 yolov3_int8.bmodel yolov3_mix.bmodel
