//! The `detect_yolov3` sample: its own preprocessing (PIL bicubic letterbox), the decode of
//! tiny-yolov3's two heads, NMS with the sample's quirks, class names, palette and drawing.

pub mod agreement;
pub mod coco;
pub mod decode;
pub mod draw;
pub mod nms;
pub mod pil_resize;

pub use coco::{class_name, COCO_CLASSES, PALETTE};
pub use decode::decode;
pub use draw::draw;
pub use pil_resize::resize_bicubic;

use crate::preprocess::ImageU8;
use ndarray::{Array4, ArrayD};

/// Errors of the YOLO post-processing; each says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum YoloError {
    /// The model does not have one output per anchor mask.
    #[error("expected {expected} YOLO heads (model outputs), got {got}")]
    HeadCount { expected: usize, got: usize },
    /// An output is not `[1, anchors * (5 + classes), H, W]`.
    #[error("YOLO head {index} has shape {shape:?}; expected [1, {expected_channels}, H, W]")]
    HeadShape { index: usize, shape: Vec<usize>, expected_channels: usize },
    /// A degenerate original image size.
    #[error("image size {width}x{height} is empty")]
    ImageSize { width: usize, height: usize },
}

/// Which post-processing produces the detections (see [`decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postprocess {
    /// detect_yolov3.py's `postprocess` (the sample's path for .mlir / .bmodel / .cvimodel)
    Sample,
    /// the decode + NonMaxSuppression tail inside tiny-yolov3-11.onnx (the sample's .onnx path)
    OnnxTail,
}

/// Decode parameters; [`Params::default`] is tiny-yolov3 at 416x416 with the sample's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// anchor (w, h) in net-input pixels
    pub anchors: Vec<[f64; 2]>,
    /// anchor indices per head, in head order
    pub masks: Vec<Vec<usize>>,
    /// net input height
    pub net_h: usize,
    /// net input width
    pub net_w: usize,
    /// number of classes
    pub num_classes: usize,
    /// minimum `objectness * class probability` (`--score_thres`)
    pub score_thresh: f64,
    /// NMS IoU threshold (`--iou_thres`)
    pub nms_thresh: f64,
    /// `--conf_thres`: accepted for compatibility, unused by the sample's NMS
    pub conf_thresh: f64,
    /// score threshold of the ONNX model's own NonMaxSuppression (strict `>`)
    pub onnx_score_thresh: f64,
    /// per-class box limit of the ONNX model's NonMaxSuppression
    pub max_boxes: usize,
    /// which post-processing to run
    pub postprocess: Postprocess,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            anchors: vec![[10.0, 14.0], [23.0, 27.0], [37.0, 58.0], [81.0, 82.0], [135.0, 169.0], [344.0, 319.0]],
            masks: vec![vec![3, 4, 5], vec![1, 2, 3]],
            net_h: 416,
            net_w: 416,
            num_classes: 80,
            score_thresh: 0.56,
            nms_thresh: 0.5,
            conf_thresh: 0.001,
            onnx_score_thresh: 0.6000000238418579,
            max_boxes: 20,
            postprocess: Postprocess::Sample,
        }
    }
}

/// One detection in original-image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// class index (COCO)
    pub class: usize,
    /// `objectness * class probability`
    pub score: f64,
    /// left
    pub x0: f64,
    /// top
    pub y0: f64,
    /// right
    pub x1: f64,
    /// bottom
    pub y1: f64,
}

impl Detection {
    /// The sample's label, e.g. `car:81.7%`.
    pub fn label(&self) -> String {
        format!("{}:{:.1}%", class_name(self.class), self.score * 100.0)
    }
}

/// detect_yolov3.py's preprocessing of an RGB image: PIL bicubic resize keeping the aspect
/// ratio (`nw = int(iw * s)`), pasted centred on a (128, 128, 128) canvas, `/ 255` in f32,
/// NCHW `[1, 3, net_h, net_w]`.
pub fn preprocess_yolo(img: &ImageU8, net_h: usize, net_w: usize) -> ArrayD<f32> {
    let s = f64::min(net_w as f64 / img.width as f64, net_h as f64 / img.height as f64);
    let nw = (img.width as f64 * s) as usize;
    let nh = (img.height as f64 * s) as usize;
    let resized = resize_bicubic(img, nw, nh);
    let mut canvas = ImageU8::filled(net_h, net_w, 3, 128);
    canvas.paste(&resized, (net_w - nw.min(net_w)) / 2, (net_h - nh.min(net_h)) / 2);
    let mut t = Array4::<f32>::zeros((1, 3, net_h, net_w));
    for c in 0..3 {
        for y in 0..net_h {
            for x in 0..net_w {
                t[[0, c, y, x]] = canvas.at(y, x, c) as f32 / 255.0;
            }
        }
    }
    t.into_dyn()
}

#[cfg(test)]
mod tests;
