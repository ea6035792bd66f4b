//! Decoding of the two tiny-yolov3 heads (`[1, 3 * (5 + classes), H, W]`, NCHW) into boxes in
//! original-image pixels, in the two ways the flow produces its printed detections:
//!
//! * [`Postprocess::Sample`] — detect_yolov3.py's own `postprocess` (used for .mlir / .bmodel):
//!   f64 arithmetic as numpy 1.x does it, score threshold `>=`, quirky NMS per class in the
//!   iteration order of a Python `set`, kept boxes in NMS order.
//! * [`Postprocess::OnnxTail`] — the decode + `NonMaxSuppression` tail of tiny-yolov3-11.onnx
//!   that the sample relies on for .onnx models (f32 arithmetic, threshold `> 0.6`, standard
//!   IoU, at most 20 per class, classes ascending).

use super::nms::{nms_onnx, nms_sample, python_set_order};
use super::{Detection, Params, Postprocess, YoloError};
use ndarray::ArrayD;

/// One head viewed as `(row, col, anchor, field)` over an NCHW tensor.
struct Head<'a> {
    data: &'a ArrayD<f32>,
    h: usize,
    w: usize,
    fields: usize,
}

impl Head<'_> {
    fn get(&self, row: usize, col: usize, anchor: usize, field: usize) -> f32 {
        self.data[[0, anchor * self.fields + field, row, col]]
    }
}

/// A scored, classed candidate before NMS (corners already in image pixels).
#[derive(Debug, Clone)]
struct Candidate {
    class: usize,
    score: f64,
    corners: [f64; 4],
}

fn check_heads<'a>(heads: &'a [ArrayD<f32>], p: &Params) -> Result<Vec<Head<'a>>, YoloError> {
    if heads.len() != p.masks.len() {
        return Err(YoloError::HeadCount { expected: p.masks.len(), got: heads.len() });
    }
    let fields = 5 + p.num_classes;
    heads
        .iter()
        .enumerate()
        .map(|(index, t)| match t.shape() {
            &[1, c, h, w] if c == p.masks[index].len() * fields && h > 0 && w > 0 => Ok(Head { data: t, h, w, fields }),
            s => {
                Err(YoloError::HeadShape { index, shape: s.to_vec(), expected_channels: p.masks[index].len() * fields })
            }
        })
        .collect()
}

fn sigmoid64(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// Decode both heads and run the NMS of `p.postprocess`. `img_w`, `img_h` are the original
/// image size. Detections come in the order the sample prints them.
pub fn decode(heads: &[ArrayD<f32>], img_w: usize, img_h: usize, p: &Params) -> Result<Vec<Detection>, YoloError> {
    let views = check_heads(heads, p)?;
    if img_w == 0 || img_h == 0 {
        return Err(YoloError::ImageSize { width: img_w, height: img_h });
    }
    match p.postprocess {
        Postprocess::Sample => Ok(decode_sample(&views, img_w, img_h, p)),
        Postprocess::OnnxTail => Ok(decode_onnx_tail(&views, img_w, img_h, p)),
    }
}

/// detect_yolov3.py `process_feats` + `filter_boxes` + per-class `nms`.
fn decode_sample(views: &[Head], img_w: usize, img_h: usize, p: &Params) -> Vec<Detection> {
    let (in_h, in_w) = (p.net_h as f64, p.net_w as f64);
    // letterbox undo, with the sample's (w, h) image shape against the (h, w) input shape
    let img_shape = [img_w as f64, img_h as f64];
    let input_shape = [in_h, in_w];
    let ratio = f64::min(input_shape[0] / img_shape[0], input_shape[1] / img_shape[1]);
    let new_shape = [(img_shape[0] * ratio).round_ties_even(), (img_shape[1] * ratio).round_ties_even()];
    let offset = [
        (input_shape[0] - new_shape[0]) / 2.0 / input_shape[0],
        (input_shape[1] - new_shape[1]) / 2.0 / input_shape[1],
    ];
    let scale = [input_shape[0] / new_shape[0], input_shape[1] / new_shape[1]];
    let mut cands: Vec<Candidate> = Vec::new();
    for (head, mask) in views.iter().zip(&p.masks) {
        for row in 0..head.h {
            for col in 0..head.w {
                for (a, &anchor_index) in mask.iter().enumerate() {
                    let conf = sigmoid64(head.get(row, col, a, 4));
                    let (mut best, mut best_score) = (0usize, f64::NEG_INFINITY);
                    for k in 0..p.num_classes {
                        let s = conf * sigmoid64(head.get(row, col, a, 5 + k));
                        if s > best_score {
                            best = k;
                            best_score = s;
                        }
                    }
                    // numpy compares the f64 scores with the Python float threshold
                    let passes = best_score >= p.score_thresh;
                    if !passes {
                        continue;
                    }
                    let [aw, ah] = p.anchors[anchor_index];
                    let x = (sigmoid64(head.get(row, col, a, 0)) + col as f64) / head.w as f64;
                    let y = (sigmoid64(head.get(row, col, a, 1)) + row as f64) / head.h as f64;
                    let bw = (head.get(row, col, a, 2) as f64).exp() * aw / in_w;
                    let bh = (head.get(row, col, a, 3) as f64).exp() * ah / in_h;
                    let (x, y) = ((x - offset[0]) * scale[0], (y - offset[1]) * scale[1]);
                    let (bw, bh) = (bw * scale[0], bh * scale[1]);
                    let corners = [
                        (x - bw / 2.0) * img_w as f64,
                        (y - bh / 2.0) * img_h as f64,
                        (x + bw / 2.0) * img_w as f64,
                        (y + bh / 2.0) * img_h as f64,
                    ];
                    cands.push(Candidate { class: best, score: best_score, corners });
                }
            }
        }
    }
    let classes: Vec<usize> = cands.iter().map(|c| c.class).collect();
    let mut out = Vec::new();
    for class in python_set_order(&classes) {
        let members: Vec<&Candidate> = cands.iter().filter(|c| c.class == class).collect();
        let boxes: Vec<[f64; 4]> = members.iter().map(|c| c.corners).collect();
        let scores: Vec<f64> = members.iter().map(|c| c.score).collect();
        for i in nms_sample(&boxes, &scores, p.nms_thresh) {
            let c = members[i];
            let [x0, y0, x1, y1] = c.corners;
            out.push(Detection { class, score: c.score, x0, y0, x1, y1 });
        }
    }
    out
}

/// The tiny-yolov3-11.onnx tail: decode in f32 to `[y0, x0, y1, x1]` pixels, scores
/// `sigmoid(obj) * sigmoid(cls)`, ONNX NonMaxSuppression per class, classes ascending.
fn decode_onnx_tail(views: &[Head], img_w: usize, img_h: usize, p: &Params) -> Vec<Detection> {
    let sig = |x: f32| -> f32 { (1.0 / (1.0 + (-(x as f64)).exp())) as f32 };
    let (in_h, in_w) = (p.net_h as f32, p.net_w as f32);
    let (ih, iw) = (img_h as f32, img_w as f32);
    let ratio = f32::min(in_h / ih, in_w / iw);
    let new = [(ih * ratio).round_ties_even(), (iw * ratio).round_ties_even()];
    let offset = [(in_h - new[0]) / (2.0 * in_h), (in_w - new[1]) / (2.0 * in_w)];
    let scale = [in_h / new[0], in_w / new[1]];
    let mut boxes: Vec<[f32; 4]> = Vec::new();
    let mut scores: Vec<Vec<f32>> = vec![Vec::new(); p.num_classes];
    for (head, mask) in views.iter().zip(&p.masks) {
        for row in 0..head.h {
            for col in 0..head.w {
                for (a, &anchor_index) in mask.iter().enumerate() {
                    let [aw, ah] = p.anchors[anchor_index];
                    let by = (sig(head.get(row, col, a, 1)) + row as f32) / head.h as f32;
                    let bx = (sig(head.get(row, col, a, 0)) + col as f32) / head.w as f32;
                    let bh = ((head.get(row, col, a, 3) as f64).exp() as f32) * (ah as f32 / in_h);
                    let bw = ((head.get(row, col, a, 2) as f64).exp() as f32) * (aw as f32 / in_w);
                    let (cy, cx) = ((by - offset[0]) * scale[0], (bx - offset[1]) * scale[1]);
                    let (hh, hw) = (bh * scale[0] / 2.0, bw * scale[1] / 2.0);
                    boxes.push([(cy - hh) * ih, (cx - hw) * iw, (cy + hh) * ih, (cx + hw) * iw]);
                    let obj = sig(head.get(row, col, a, 4));
                    for (k, s) in scores.iter_mut().enumerate() {
                        s.push(obj * sig(head.get(row, col, a, 5 + k)));
                    }
                }
            }
        }
    }
    let tail_thresh = p.onnx_score_thresh as f32;
    let mut out = Vec::new();
    for (class, s) in scores.iter().enumerate() {
        for i in nms_onnx(&boxes, s, p.nms_thresh as f32, tail_thresh, p.max_boxes) {
            let [y0, x0, y1, x1] = boxes[i];
            let score = s[i] as f64;
            // the sample's `vis` skips scores below --score_thres
            if score < p.score_thresh {
                continue;
            }
            out.push(Detection { class, score, x0: x0 as f64, y0: y0 as f64, x1: x1 as f64, y1: y1 as f64 });
        }
    }
    out
}
