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

/// Decode a jpg/png file into 8-bit samples in the requested channel layout. Baseline JPEGs go
/// through [`super::jpeg`] (bit-exact with libjpeg-turbo, hence with cv2 and PIL); other files
/// through the `image` crate. 16-bit images are reduced by dropping the low byte (as OpenCV
/// does), alpha is dropped, EXIF orientation is applied.
pub fn read_image(path: &Path, mode: ReadMode) -> Result<ImageU8, PreprocessError> {
    let err = |msg: String| PreprocessError::Image { path: path.to_path_buf(), msg };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let orientation = orientation_of(&bytes);
    let mut img = if bytes.starts_with(&[0xFF, 0xD8]) {
        match super::jpeg::decode_jpeg(&bytes) {
            Ok(j) => from_jpeg(&j, mode),
            Err(super::jpeg::JpegError::Unsupported(_)) => decode_with_image_crate(&bytes, mode).map_err(err)?,
            Err(e) => return Err(err(e.to_string())),
        }
    } else {
        decode_with_image_crate(&bytes, mode).map_err(err)?
    };
    if orientation != image::metadata::Orientation::NoTransforms {
        img = oriented(img, orientation);
    }
    Ok(img)
}

/// cv2's RGB -> gray weights (ITU-R 601) in 14-bit fixed point.
fn gray_of(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 4899 + g as u32 * 9617 + b as u32 * 1868 + 8192) >> 14) as u8
}

/// Reorder interleaved RGB samples into the requested layout.
fn from_rgb(width: usize, height: usize, rgb: Vec<u8>, mode: ReadMode) -> ImageU8 {
    let data = match mode {
        ReadMode::Rgb => rgb,
        ReadMode::Bgr => {
            let mut d = rgb;
            d.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
            d
        }
        ReadMode::Gray => rgb.chunks_exact(3).map(|p| gray_of(p[0], p[1], p[2])).collect(),
    };
    let channels = if mode == ReadMode::Gray { 1 } else { 3 };
    ImageU8 { height, width, channels, data }
}

/// A decoded JPEG in the requested layout (BGR converted straight into that order).
fn from_jpeg(j: &super::jpeg::DecodedJpeg, mode: ReadMode) -> ImageU8 {
    let (height, width) = (j.height, j.width);
    match mode {
        ReadMode::Gray => match j.luma() {
            Some(y) => ImageU8 { height, width, channels: 1, data: y.to_vec() },
            None => from_rgb(width, height, j.to_rgb(), mode),
        },
        ReadMode::Bgr => ImageU8 { height, width, channels: 3, data: j.to_bgr() },
        ReadMode::Rgb => ImageU8 { height, width, channels: 3, data: j.to_rgb() },
    }
}

fn decode_with_image_crate(bytes: &[u8], mode: ReadMode) -> Result<ImageU8, String> {
    let reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let rgb: Vec<u8> = match &img {
        image::DynamicImage::ImageLuma16(_)
        | image::DynamicImage::ImageLumaA16(_)
        | image::DynamicImage::ImageRgb16(_)
        | image::DynamicImage::ImageRgba16(_) => img.to_rgb16().into_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        _ => img.to_rgb8().into_raw(),
    };
    Ok(from_rgb(width, height, rgb, mode))
}

/// EXIF orientation of an encoded image (none when absent or unreadable).
fn orientation_of(bytes: &[u8]) -> image::metadata::Orientation {
    let none = image::metadata::Orientation::NoTransforms;
    let Ok(reader) = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format() else { return none };
    let Ok(mut decoder) = reader.into_decoder() else { return none };
    image::ImageDecoder::orientation(&mut decoder).unwrap_or(none)
}

/// Apply an EXIF orientation to an image.
fn oriented(img: ImageU8, orientation: image::metadata::Orientation) -> ImageU8 {
    let (w, h, c) = (img.width as u32, img.height as u32, img.channels);
    let mut dynimg = if c == 1 {
        match image::GrayImage::from_raw(w, h, img.data.clone()) {
            Some(g) => image::DynamicImage::ImageLuma8(g),
            None => return img,
        }
    } else {
        match image::RgbImage::from_raw(w, h, img.data.clone()) {
            Some(g) => image::DynamicImage::ImageRgb8(g),
            None => return img,
        }
    };
    dynimg.apply_orientation(orientation);
    let (width, height) = (dynimg.width() as usize, dynimg.height() as usize);
    let data = if c == 1 { dynimg.into_luma8().into_raw() } else { dynimg.into_rgb8().into_raw() };
    ImageU8 { height, width, channels: c, data }
}
