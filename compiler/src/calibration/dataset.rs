//! Calibration sample selection as tpu-mlir's `DataSelector` does it (flow reference 2.2):
//! a recursive, sorted directory listing shuffled with Python's `random.seed(1684)`, or a list
//! file with one sample (comma-separated inputs) per line.

use super::CalibError;
use std::path::{Path, PathBuf};

/// The seed tpu-mlir uses before shuffling the dataset.
pub const DATASET_SEED: u32 = 1684;

/// What kind of files a dataset consists of (tpu-mlir allows one kind per dataset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// jpg / jpeg / png / bmp / jfif, preprocessed by the `top.Input` attributes
    Image,
    /// one `.npy` per model input
    Npy,
    /// one `.npz` holding every input
    Npz,
    /// raw `.yuv` frames
    Yuv,
}

impl SampleKind {
    /// Kind of one file by its (lower-cased) extension, `None` if not a sample file.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let ext = name.rsplit('.').next().unwrap_or("");
        if !name.contains('.') {
            return None;
        }
        match ext {
            "jpg" | "jpeg" | "png" | "bmp" | "jfif" => Some(SampleKind::Image),
            "npy" => Some(SampleKind::Npy),
            "npz" => Some(SampleKind::Npz),
            "yuv" => Some(SampleKind::Yuv),
            _ => None,
        }
    }
}

/// The selected samples, in processing order; each sample lists one file per model input
/// (an npz sample has a single file holding every input).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Samples in order.
    pub samples: Vec<Vec<PathBuf>>,
    /// Their common kind.
    pub kind: SampleKind,
}

/// CPython's MT19937 generator (`random.Random`), enough of it to reproduce `random.shuffle`.
#[derive(Clone)]
pub struct Mt19937 {
    mt: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn init_genrand(s: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = s;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { mt, index: 624 }
    }

    /// `random.seed(n)` for a non-negative integer below 2^32 (CPython's `init_by_array([n])`).
    pub fn python_seed(n: u32) -> Self {
        let key = [n];
        let mut g = Self::init_genrand(19_650_218);
        let mt = &mut g.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        g
    }

    /// Next 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `getrandbits(k)` for 1 <= k <= 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)` (rejection sampling on `n.bit_length()` bits), n in 1..=2^32-1.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        let mut r = self.getrandbits(k);
        while r >= n {
            r = self.getrandbits(k);
        }
        r
    }
}

/// `random.seed(seed); random.shuffle(items)` exactly as CPython does it.
pub fn python_shuffle<T>(items: &mut [T], seed: u32) {
    let mut g = Mt19937::python_seed(seed);
    for i in (1..items.len()).rev() {
        let j = g.randbelow(i as u32 + 1) as usize;
        items.swap(i, j);
    }
}

/// Every sample file below `dir` (recursive), as relative '/'-joined paths.
fn list_recursive(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), CalibError> {
    let rd = std::fs::read_dir(dir).map_err(|e| CalibError::Io { path: dir.to_path_buf(), msg: e.to_string() })?;
    for ent in rd {
        let ent = ent.map_err(|e| CalibError::Io { path: dir.to_path_buf(), msg: e.to_string() })?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let path = ent.path();
        let r = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if path.is_dir() {
            list_recursive(&path, &r, out)?;
        } else if SampleKind::of(&path).is_some() {
            out.push(r);
        }
    }
    Ok(())
}

fn common_kind(samples: &[Vec<PathBuf>]) -> Result<SampleKind, CalibError> {
    let mut kind: Option<SampleKind> = None;
    for f in samples.iter().flatten() {
        let k = SampleKind::of(f)
            .ok_or_else(|| CalibError::Dataset(format!("{}: not an image, npy or npz file", f.display())))?;
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(CalibError::Dataset(format!(
                    "all samples must be of one kind (image, npy, npz or yuv); {} is {:?} but earlier ones are {:?}",
                    f.display(),
                    k,
                    prev
                )))
            }
            _ => {}
        }
    }
    kind.ok_or_else(|| CalibError::Dataset("there are no inputs".into()))
}

/// `--dataset DIR`: sorted recursive listing, shuffled with seed 1684, first `input_num` (0 = all).
pub fn select_dataset(dir: &Path, input_num: usize) -> Result<Dataset, CalibError> {
    if !dir.is_dir() {
        return Err(CalibError::Dataset(format!("{}: not a directory", dir.display())));
    }
    let mut names = Vec::new();
    list_recursive(dir, "", &mut names)?;
    if names.is_empty() {
        return Err(CalibError::Dataset(format!(
            "{}: no image (jpg/jpeg/png/bmp), npy or npz files found",
            dir.display()
        )));
    }
    names.sort();
    python_shuffle(&mut names, DATASET_SEED);
    if input_num > 0 && input_num < names.len() {
        names.truncate(input_num);
    }
    let samples: Vec<Vec<PathBuf>> = names.iter().map(|n| vec![dir.join(n)]).collect();
    let kind = common_kind(&samples)?;
    Ok(Dataset { samples, kind })
}

/// `--data_list FILE`: one sample per line (inputs comma-separated), first `input_num` lines
/// (0 = all). Relative paths are taken as written (relative to the working directory, as
/// tpu-mlir does); every file must exist.
pub fn read_data_list(list: &Path, input_num: usize) -> Result<Dataset, CalibError> {
    let text =
        std::fs::read_to_string(list).map_err(|e| CalibError::Io { path: list.to_path_buf(), msg: e.to_string() })?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let files: Vec<PathBuf> = line.split(',').map(|s| PathBuf::from(s.trim())).collect();
        for f in &files {
            if !f.is_file() {
                return Err(CalibError::Dataset(format!(
                    "{}:{}: {}: no such file",
                    list.display(),
                    i + 1,
                    f.display()
                )));
            }
        }
        samples.push(files);
    }
    if input_num > 0 && input_num < samples.len() {
        samples.truncate(input_num);
    }
    if samples.is_empty() {
        return Err(CalibError::Dataset(format!("{}: the list has no samples", list.display())));
    }
    let kind = common_kind(&samples)?;
    Ok(Dataset { samples, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_matches_cpython() {
        // python3: random.seed(1684); l = list(range(N)); random.shuffle(l)
        let mut v: Vec<u32> = (0..7).collect();
        python_shuffle(&mut v, 1684);
        assert_eq!(v, vec![5, 6, 1, 2, 4, 0, 3]);
        let mut v: Vec<u32> = (0..100).collect();
        python_shuffle(&mut v, 1684);
        assert_eq!(
            v,
            vec![
                55, 78, 59, 96, 93, 23, 12, 10, 20, 8, 87, 37, 6, 34, 77, 3, 27, 90, 24, 89, 52, 13, 70, 18, 43, 81,
                91, 63, 38, 15, 65, 44, 35, 5, 68, 82, 31, 36, 88, 40, 46, 56, 60, 51, 9, 95, 54, 26, 50, 92, 25, 85,
                58, 99, 19, 17, 84, 21, 42, 64, 48, 14, 30, 4, 75, 7, 86, 45, 16, 94, 41, 69, 49, 22, 28, 29, 11, 47,
                98, 76, 2, 83, 62, 71, 0, 72, 32, 97, 74, 79, 67, 73, 80, 57, 53, 39, 33, 66, 1, 61
            ]
        );
    }

    #[test]
    fn coco_selection_matches_tpu_mlir() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/images/COCO2017"));
        let ds = select_dataset(dir, 5).unwrap();
        let names: Vec<String> =
            ds.samples.iter().map(|s| s[0].file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            ["000000213605.jpg", "000000366711.jpg", "000000232348.jpg", "000000550939.jpg", "000000532761.jpg"]
        );
        assert_eq!(ds.kind, SampleKind::Image);
        assert_eq!(select_dataset(dir, 0).unwrap().samples.len(), 100);
    }

    #[test]
    fn data_list_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("cali_ds_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list.txt");
        std::fs::write(&list, format!("{}\n", list.display())).unwrap();
        let e = read_data_list(&list, 0).unwrap_err().to_string();
        assert_eq!(e, format!("dataset: {}: not an image, npy or npz file", list.display()));
        let img = dir.join("a.jpg");
        std::fs::write(&img, b"x").unwrap();
        std::fs::write(&list, format!("{}\n/nonexistent/x.jpg\n", img.display())).unwrap();
        let e = read_data_list(&list, 0).unwrap_err().to_string();
        assert_eq!(e, format!("dataset: {}:2: /nonexistent/x.jpg: no such file", list.display()));
        assert_eq!(read_data_list(&list, 1).unwrap_err().to_string(), e, "existence is checked for every line");
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(
            select_dataset(&empty, 0).unwrap_err().to_string(),
            format!("dataset: {}: no image (jpg/jpeg/png/bmp), npy or npz files found", empty.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
