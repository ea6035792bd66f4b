//! The preprocessing parameters recorded on `top.Input` by model_transform and read back by
//! run_calibration, model_deploy and model_runner.

use crate::ir::{attr, Attr, Attrs};
use std::path::PathBuf;

/// Errors of preprocessing and input loading; each names the file or the attribute.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// An image that cannot be opened or decoded.
    #[error("{path}: cannot read image: {msg}")]
    Image { path: PathBuf, msg: String },
    /// An npz / npy input that cannot be read or has the wrong shape.
    #[error("{path}: {msg}")]
    Array { path: PathBuf, msg: String },
    /// A bad preprocessing parameter.
    #[error("preprocessing: {0}")]
    Config(String),
}

/// Target channel order of the tensor fed to the model (`--pixel_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    Gray,
}

/// Layout of the model input (`--channel_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelFormat {
    Nchw,
    Nhwc,
}

/// Where the resized image is pasted in the letterbox canvas (`--pad_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadType {
    /// centred paste
    Center,
    /// top-left paste
    Normal,
}

/// All preprocessing parameters of one image input.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// per-channel mean (subtracted before scaling)
    pub mean: Vec<f64>,
    /// per-channel scale
    pub scale: Vec<f64>,
    /// channel order fed to the model
    pub pixel_format: PixelFormat,
    /// input layout
    pub channel_format: ChannelFormat,
    /// letterbox instead of stretching
    pub keep_aspect_ratio: bool,
    /// fill value of the letterbox border (raw pixel domain)
    pub pad_value: i64,
    /// paste position in the letterbox
    pub pad_type: PadType,
    /// resize target (h, w); the net's h, w when not given
    pub resize_dims: Vec<usize>,
}

impl PixelFormat {
    /// tpu-mlir spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelFormat::Rgb => "rgb",
            PixelFormat::Bgr => "bgr",
            PixelFormat::Gray => "gray",
        }
    }
    /// Parse tpu-mlir spelling.
    pub fn parse(s: &str) -> Result<Self, PreprocessError> {
        match s {
            "rgb" => Ok(PixelFormat::Rgb),
            "bgr" => Ok(PixelFormat::Bgr),
            "gray" => Ok(PixelFormat::Gray),
            _ => Err(PreprocessError::Config(format!("unknown pixel_format '{s}' (expected rgb, bgr or gray)"))),
        }
    }
}

impl ChannelFormat {
    /// tpu-mlir spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelFormat::Nchw => "nchw",
            ChannelFormat::Nhwc => "nhwc",
        }
    }
    /// Parse tpu-mlir spelling.
    pub fn parse(s: &str) -> Result<Self, PreprocessError> {
        match s {
            "nchw" => Ok(ChannelFormat::Nchw),
            "nhwc" => Ok(ChannelFormat::Nhwc),
            _ => Err(PreprocessError::Config(format!("unknown channel_format '{s}' (expected nchw or nhwc)"))),
        }
    }
}

impl PadType {
    /// tpu-mlir spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PadType::Center => "center",
            PadType::Normal => "normal",
        }
    }
    /// Parse tpu-mlir spelling.
    pub fn parse(s: &str) -> Result<Self, PreprocessError> {
        match s {
            "center" => Ok(PadType::Center),
            "normal" => Ok(PadType::Normal),
            _ => Err(PreprocessError::Config(format!("unknown pad_type '{s}' (expected center or normal)"))),
        }
    }
}

impl PreprocessConfig {
    /// The `top.Input` attributes tpu-mlir writes for this configuration.
    pub fn to_attrs(&self) -> Attrs {
        let mut a = Attrs::new();
        a.insert("channel_format".into(), attr::str(self.channel_format.as_str()));
        a.insert("do_preprocess".into(), attr::bool(true));
        a.insert("keep_aspect_ratio".into(), attr::bool(self.keep_aspect_ratio));
        a.insert("keep_ratio_mode".into(), attr::str("letterbox"));
        a.insert("mean".into(), attr::floats(&self.mean));
        a.insert("pad_type".into(), attr::str(self.pad_type.as_str()));
        a.insert("pad_value".into(), attr::i64(self.pad_value));
        a.insert("pixel_format".into(), attr::str(self.pixel_format.as_str()));
        let dims: Vec<i64> = self.resize_dims.iter().map(|&d| d as i64).collect();
        a.insert("resize_dims".into(), attr::ints(&dims));
        a.insert("scale".into(), attr::floats(&self.scale));
        a.insert("yuv_type".into(), attr::str(""));
        a
    }

    /// Read the configuration back from a `top.Input`'s attributes; `None` when the input has
    /// no preprocessing (not an image input).
    pub fn from_attrs(attrs: &Attrs) -> Result<Option<Self>, PreprocessError> {
        let s = |k: &str| match attrs.get(k) {
            Some(Attr::Str(v)) => Some(v.clone()),
            _ => None,
        };
        let floats = |k: &str| match attrs.get(k) {
            Some(Attr::FloatArray(v)) => Some(v.clone()),
            Some(Attr::IntArray(v)) => Some(v.iter().map(|&x| x as f64).collect()),
            _ => None,
        };
        let (Some(pf), Some(cf)) = (s("pixel_format"), s("channel_format")) else {
            return Ok(None);
        };
        let resize_dims = match attrs.get("resize_dims") {
            Some(Attr::IntArray(v)) => v.iter().map(|&x| x.max(0) as usize).collect(),
            _ => Vec::new(),
        };
        Ok(Some(PreprocessConfig {
            mean: floats("mean").unwrap_or_else(|| vec![0.0; 3]),
            scale: floats("scale").unwrap_or_else(|| vec![1.0; 3]),
            pixel_format: PixelFormat::parse(&pf)?,
            channel_format: ChannelFormat::parse(&cf)?,
            keep_aspect_ratio: matches!(attrs.get("keep_aspect_ratio"), Some(Attr::Bool(true))),
            pad_value: match attrs.get("pad_value") {
                Some(Attr::Int(v, _)) => *v,
                _ => 0,
            },
            pad_type: PadType::parse(&s("pad_type").unwrap_or_else(|| "center".into()))?,
            resize_dims,
        }))
    }
}
