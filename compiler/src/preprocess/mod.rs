//! Image preprocessing exactly as tpu-mlir does it (flow reference 1.4): decode, resize or
//! letterbox, channel order, `(x - mean) * scale`, layout. Also loads npz / npy inputs.
//!
//! Steps for an image: `cv2.imread` (BGR, or gray) -> OpenCV bilinear resize to `resize_dims`
//! (stretched, or letterboxed: `s = min(w/iw, h/ih)`, `nw = int(iw*s)`, `nh = int(ih*s)`,
//! pasted on a `pad_value` canvas centred or top-left) -> centre crop to the net's h, w when
//! `resize_dims` differ -> CHW f32 -> BGR to RGB swap for `rgb` -> `(x - mean) * scale` in f32
//! -> NHWC transpose for `nhwc` -> repeated to the batch.

pub mod arrays;
mod avx2;
pub mod config;
pub mod cv_resize;
pub mod image_u8;
pub mod jpeg;

pub use config::{ChannelFormat, PadType, PixelFormat, PreprocessConfig, PreprocessError};
pub use cv_resize::resize_linear;
pub use image_u8::{read_image, ImageU8, ReadMode};

use ndarray::{ArrayD, IxDyn};
use std::path::Path;

/// Geometry of an image input taken from the model input shape and the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputGeometry {
    /// batch size
    pub batch: usize,
    /// channels (3 for rgb/bgr, 1 for gray)
    pub channels: usize,
    /// net input height
    pub height: usize,
    /// net input width
    pub width: usize,
}

impl InputGeometry {
    /// Read batch, channels, height and width from a 4-D input shape in `layout`.
    pub fn from_shape(shape: &[usize], layout: ChannelFormat) -> Result<Self, PreprocessError> {
        let &[n, a, b, c] = shape else {
            return Err(PreprocessError::Config(format!("an image input needs a 4-D shape, got {shape:?}")));
        };
        Ok(match layout {
            ChannelFormat::Nchw => InputGeometry { batch: n, channels: a, height: b, width: c },
            ChannelFormat::Nhwc => InputGeometry { batch: n, channels: c, height: a, width: b },
        })
    }
}

/// Resize (stretch or letterbox) a decoded image to `resize_dims` and centre-crop it to the
/// net's `height x width`, as tpu-mlir's `__load_image_and_resize` does.
pub fn resize_for_net(
    img: &ImageU8,
    cfg: &PreprocessConfig,
    height: usize,
    width: usize,
) -> Result<ImageU8, PreprocessError> {
    let (rh, rw) = match cfg.resize_dims.as_slice() {
        [] => (height, width),
        &[h, w] => (h, w),
        other => return Err(PreprocessError::Config(format!("resize_dims must be h,w, got {other:?}"))),
    };
    if rh < height || rw < width {
        return Err(PreprocessError::Config(format!(
            "resize_dims {rh}x{rw} smaller than the net input {height}x{width}"
        )));
    }
    let resized = if cfg.keep_aspect_ratio {
        let s = f64::min(rw as f64 / img.width as f64, rh as f64 / img.height as f64);
        let nw = (img.width as f64 * s) as usize;
        let nh = (img.height as f64 * s) as usize;
        let inner = resize_linear(img, nw, nh);
        let pad = cfg.pad_value.clamp(0, 255) as u8;
        let mut canvas = ImageU8::filled(rh, rw, img.channels, pad);
        let (x0, y0) = match cfg.pad_type {
            PadType::Center => ((rw - nw) / 2, (rh - nh) / 2),
            PadType::Normal => (0, 0),
        };
        canvas.paste(&inner, x0, y0);
        canvas
    } else {
        resize_linear(img, rw, rh)
    };
    if (rh, rw) == (height, width) {
        Ok(resized)
    } else {
        Ok(resized.crop((rw - width) / 2, (rh - height) / 2, width, height))
    }
}

/// Turn a decoded image (BGR, or gray for `pixel_format = gray`) into the model input tensor
/// of shape `shape` (4-D, layout from `cfg`).
pub fn preprocess_image(
    img: &ImageU8,
    cfg: &PreprocessConfig,
    shape: &[usize],
) -> Result<ArrayD<f32>, PreprocessError> {
    let g = InputGeometry::from_shape(shape, cfg.channel_format)?;
    let want_channels = if cfg.pixel_format == PixelFormat::Gray { 1 } else { 3 };
    if g.channels != want_channels || img.channels != want_channels {
        return Err(PreprocessError::Config(format!(
            "pixel_format {} needs {want_channels} channel(s); input shape {shape:?} has {}, image has {}",
            cfg.pixel_format.as_str(),
            g.channels,
            img.channels
        )));
    }
    let param = |v: &[f64], c: usize, default: f64| -> f32 {
        let i = if cfg.pixel_format == PixelFormat::Gray { 0 } else { c };
        v.get(i).or(v.first()).copied().unwrap_or(default) as f32
    };
    let sized = resize_for_net(img, cfg, g.height, g.width)?;
    let c = want_channels;
    // tensor channel `ch` comes from image channel `src` (BGR -> RGB swap for rgb)
    let channel = |ch: usize| {
        let src = if cfg.pixel_format == PixelFormat::Rgb { 2 - ch } else { ch };
        (src, param(&cfg.mean, ch, 0.0), param(&cfg.scale, ch, 1.0))
    };
    if g.batch == 0 {
        // what concatenating zero copies reported before
        return Err(PreprocessError::Config(
            ndarray::ShapeError::from_kind(ndarray::ErrorKind::Unsupported).to_string(),
        ));
    }
    let one = g.height * g.width * c;
    let mut data = Vec::with_capacity(one * g.batch);
    match cfg.channel_format {
        ChannelFormat::Nchw => {
            let planes = split_channels(&sized.data, c);
            for (src, mean, scale) in (0..c).map(channel) {
                append_normalised(&planes[src], mean, scale, &mut data);
            }
        }
        ChannelFormat::Nhwc => {
            // per tensor channel, `(v - mean) * scale` of every byte value (the same f32
            // operations as per sample)
            let luts: Vec<(usize, [f32; 256])> = (0..c)
                .map(|ch| {
                    let (src, mean, scale) = channel(ch);
                    (src, std::array::from_fn(|v| (v as f32 - mean) * scale))
                })
                .collect();
            for p in sized.data.chunks_exact(c) {
                data.extend(luts.iter().map(|(src, lut)| lut[p[*src] as usize]));
            }
        }
    }
    for _ in 1..g.batch {
        data.extend_from_within(..one);
    }
    let dims = match cfg.channel_format {
        ChannelFormat::Nchw => [g.batch, c, g.height, g.width],
        ChannelFormat::Nhwc => [g.batch, g.height, g.width, c],
    };
    ArrayD::from_shape_vec(IxDyn(&dims), data).map_err(|e| PreprocessError::Config(e.to_string()))
}

/// The channels of interleaved samples (`c` per pixel) as planes; 3 channels 16 pixels at a
/// time by the AVX2 kernel when the CPU has it.
fn split_channels(data: &[u8], c: usize) -> Vec<Vec<u8>> {
    let n = data.len() / c;
    if c != 3 {
        return (0..c).map(|k| data.chunks_exact(c).map(|p| p[k]).collect()).collect();
    }
    let mut planes = [vec![0u8; n], vec![0u8; n], vec![0u8; n]];
    let done = split3_fast(data, &mut planes);
    for (i, p) in data.chunks_exact(3).enumerate().skip(done) {
        for (plane, &v) in planes.iter_mut().zip(p) {
            plane[i] = v;
        }
    }
    planes.into()
}

/// The leading pixels of [`split_channels`] for 3 channels, 16 at a time by the AVX2 kernel
/// when the CPU has it; returns how many pixels it split (the caller does the rest).
fn split3_fast(data: &[u8], planes: &mut [Vec<u8>; 3]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        let mut done = 0;
        let [p0, p1, p2] = planes;
        let outs = p0.chunks_exact_mut(16).zip(p1.chunks_exact_mut(16)).zip(p2.chunks_exact_mut(16));
        for (src, ((a, b), c)) in data.chunks_exact(48).zip(outs) {
            let (Ok(src), Ok(a), Ok(b), Ok(c)) = (src.try_into(), a.try_into(), b.try_into(), c.try_into()) else {
                break;
            };
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { avx2::split3x16(src, [a, b, c]) };
            done += 16;
        }
        return done;
    }
    let _ = (data, planes);
    0
}

/// Append `(v - mean) * scale` of every byte of `src` to `out` (f32 operations, no fused
/// multiply-add: the values of the per-sample formula), vectorised with AVX2 when the CPU has it.
fn append_normalised(src: &[u8], mean: f32, scale: f32, out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { append_normalised_avx2(src, mean, scale, out) };
    }
    append_normalised_body(src, mean, scale, out)
}

/// [`append_normalised_body`] compiled for AVX2 (eight conversions, subtractions and products
/// at once; the same IEEE operations on each value).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn append_normalised_avx2(src: &[u8], mean: f32, scale: f32, out: &mut Vec<f32>) {
    append_normalised_body(src, mean, scale, out)
}

/// `out.extend((v as f32 - mean) * scale for v in src)`.
#[inline(always)]
fn append_normalised_body(src: &[u8], mean: f32, scale: f32, out: &mut Vec<f32>) {
    out.extend(src.iter().map(|&v| (v as f32 - mean) * scale));
}

/// Read an image file the way `cv2.imread` does for `cfg` and preprocess it to `shape`.
pub fn load_image(path: &Path, cfg: &PreprocessConfig, shape: &[usize]) -> Result<ArrayD<f32>, PreprocessError> {
    let mode = if cfg.pixel_format == PixelFormat::Gray { ReadMode::Gray } else { ReadMode::Bgr };
    let img = read_image(path, mode)?;
    preprocess_image(&img, cfg, shape).map_err(|e| match e {
        PreprocessError::Config(msg) => PreprocessError::Image { path: path.to_path_buf(), msg },
        other => other,
    })
}

/// Whether a path names an image tpu-mlir would preprocess (jpg, jpeg, png; any case).
pub fn is_image_path(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "jpg" | "jpeg" | "png")
}

/// Load one model input from an image (jpg/png, preprocessed by `cfg`), an `.npy`, or the first
/// array of an `.npz`, checked against the expected `shape` (a single image is repeated to the batch).
pub fn load_input(
    path: &Path,
    cfg: Option<&PreprocessConfig>,
    shape: &[usize],
) -> Result<ArrayD<f32>, PreprocessError> {
    load_input_named(path, cfg, shape, None)
}

/// As [`load_input`], but an `.npz` member called `name` is preferred over the first one.
pub fn load_input_named(
    path: &Path,
    cfg: Option<&PreprocessConfig>,
    shape: &[usize],
    name: Option<&str>,
) -> Result<ArrayD<f32>, PreprocessError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if is_image_path(path) {
        let cfg = cfg.ok_or_else(|| PreprocessError::Image {
            path: path.to_path_buf(),
            msg: "the input has no preprocessing configuration (not an image input)".into(),
        })?;
        return load_image(path, cfg, shape);
    }
    let a = match ext.as_str() {
        "npy" => arrays::read_npy_f32(path)?,
        "npz" => arrays::read_npz_member_f32(path, name)?,
        _ => {
            return Err(PreprocessError::Array {
                path: path.to_path_buf(),
                msg: "unsupported input file type (expected jpg, jpeg, png, npy or npz)".into(),
            })
        }
    };
    arrays::fit_to_shape(path, a, shape)
}

#[cfg(test)]
pub(crate) mod tests;
