//! An 8-bit interleaved image (HWC, row-major) and its decoding from jpg/png the way
//! `cv2.imread` delivers it: BGR order (or one gray channel), EXIF orientation applied.

use super::PreprocessError;
use std::path::Path;

/// An 8-bit image with `channels` interleaved samples per pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageU8 {
    /// rows
    pub height: usize,
    /// columns
    pub width: usize,
    /// samples per pixel (1 gray, 3 BGR or RGB)
    pub channels: usize,
    /// `height * width * channels` samples
    pub data: Vec<u8>,
}

/// Channel layout wanted from [`read_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// three channels in B, G, R order (`cv2.IMREAD_COLOR`)
    Bgr,
    /// three channels in R, G, B order (what PIL's `convert("RGB")` gives)
    Rgb,
    /// one luma channel (`cv2.IMREAD_GRAYSCALE`, ITU-R 601 weights in 14-bit fixed point)
    Gray,
}

impl ImageU8 {
    /// A `height x width` image with every sample set to `value`.
    pub fn filled(height: usize, width: usize, channels: usize, value: u8) -> Self {
        ImageU8 { height, width, channels, data: vec![value; height * width * channels] }
    }

    /// Sample at row `y`, column `x`, channel `c`.
    pub fn at(&self, y: usize, x: usize, c: usize) -> u8 {
        self.data[(y * self.width + x) * self.channels + c]
    }

    /// Copy `src` into this image with its top-left corner at (`x0`, `y0`); parts falling
    /// outside are clipped. Channel counts must agree.
    pub fn paste(&mut self, src: &ImageU8, x0: usize, y0: usize) {
        debug_assert_eq!(self.channels, src.channels);
        let c = self.channels;
        let w = src.width.min(self.width.saturating_sub(x0));
        for y in 0..src.height.min(self.height.saturating_sub(y0)) {
            let d = ((y0 + y) * self.width + x0) * c;
            let s = y * src.width * c;
            self.data[d..d + w * c].copy_from_slice(&src.data[s..s + w * c]);
        }
    }

    /// The `h x w` window whose top-left corner is at (`x0`, `y0`) (must lie inside).
    pub fn crop(&self, x0: usize, y0: usize, w: usize, h: usize) -> ImageU8 {
        let c = self.channels;
        let mut data = Vec::with_capacity(w * h * c);
        for y in y0..y0 + h {
            let s = (y * self.width + x0) * c;
            data.extend_from_slice(&self.data[s..s + w * c]);
        }
        ImageU8 { height: h, width: w, channels: c, data }
    }
}

/// Decode a jpg/png file into 8-bit samples in the requested channel layout. 16-bit images are
/// reduced by dropping the low byte (as OpenCV does), alpha is dropped, EXIF orientation applied.
pub fn read_image(path: &Path, mode: ReadMode) -> Result<ImageU8, PreprocessError> {
    let err = |msg: String| PreprocessError::Image { path: path.to_path_buf(), msg };
    let reader = image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let mut decoder = reader.into_decoder().map_err(|e| err(e.to_string()))?;
    let orientation =
        image::ImageDecoder::orientation(&mut decoder).unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width() as usize, img.height() as usize);
    let rgb: Vec<u8> = match &img {
        image::DynamicImage::ImageLuma16(_)
        | image::DynamicImage::ImageLumaA16(_)
        | image::DynamicImage::ImageRgb16(_)
        | image::DynamicImage::ImageRgba16(_) => img.to_rgb16().into_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        _ => img.to_rgb8().into_raw(),
    };
    let data = match mode {
        ReadMode::Rgb => rgb,
        ReadMode::Bgr => {
            let mut d = rgb;
            d.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
            d
        }
        ReadMode::Gray => rgb
            .chunks_exact(3)
            .map(|p| ((p[0] as u32 * 4899 + p[1] as u32 * 9617 + p[2] as u32 * 1868 + 8192) >> 14) as u8)
            .collect(),
    };
    let channels = if mode == ReadMode::Gray { 1 } else { 3 };
    Ok(ImageU8 { height, width, channels, data })
}
