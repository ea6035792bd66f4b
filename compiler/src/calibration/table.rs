//! tpu-mlir's calibration table (flow reference 2.6): a commented header, one
//! `name threshold min max` line per tensor, and optional trailing sections
//! (`#int4_th`, `#asym_op`, `# symmetric_op`, `#weight_scale`).

use super::CalibError;
use std::fmt::Write as _;
use std::path::Path;

/// One tensor's calibration result: symmetric threshold and observed range.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibEntry {
    /// Tensor (op) name, as in the top MLIR `loc`.
    pub name: String,
    /// Quantization threshold (|x| range mapped to 127).
    pub threshold: f64,
    /// Smallest observed value (or the percentile value for `percentile9999`).
    pub min: f64,
    /// Largest observed value.
    pub max: f64,
}

/// The commented header lines tpu-mlir writes before the data lines; absent fields are not written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableHeader {
    /// Text after `# mlir version: ` (e.g. `v1.30.2-20260831 cali version 1.0`).
    pub version: Option<String>,
    /// Text after `# mlir: ` (the MLIR file as given on the command line).
    pub mlir: Option<String>,
    /// Text after `# genetated time: ` (sic, tpu-mlir's spelling).
    pub generated_time: Option<String>,
    /// Text after `# quantization threshold calculation method: ` (`kl`, `['kl']`, ...).
    pub method: Option<String>,
    /// `# histogram number: N`
    pub histogram_bins: Option<usize>,
    /// `# sample number: N`
    pub sample_number: Option<usize>,
    /// `# tune number: N` (written between two `###` lines)
    pub tune_number: Option<usize>,
    /// `#tpu-mlir-fp8 caliration table` marker line (sic) present.
    pub fp8: bool,
    /// Other comment lines of the header, kept verbatim (written after the known ones).
    pub other: Vec<String>,
}

/// A whole calibration table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CalibrationTable {
    /// Header fields.
    pub header: TableHeader,
    /// Data lines in file (op) order.
    pub entries: Vec<CalibEntry>,
    /// `#int4_th` section (same four-column lines).
    pub int4: Vec<CalibEntry>,
    /// `#asym_op` section: ops quantized asymmetrically.
    pub asym_ops: Vec<String>,
    /// `# symmetric_op` section: names (written commented, `# name`).
    pub symmetric_ops: Vec<String>,
    /// `#weight_scale` section: a name followed by numbers.
    pub weight_scales: Vec<(String, Vec<f64>)>,
}

/// Which part of the file a line belongs to while reading.
#[derive(Clone, Copy, PartialEq)]
enum Section {
    Main,
    Int4,
    Asym,
    Symmetric,
    WeightScale,
}

const COLUMNS_LINE: &str = "# op_name    threshold    min    max";

impl CalibrationTable {
    /// Look an entry up by tensor name.
    pub fn get(&self, name: &str) -> Option<&CalibEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Read a table file; errors name the file and the 1-based line.
    pub fn read(path: &Path) -> Result<Self, CalibError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CalibError::Io { path: path.to_path_buf(), msg: e.to_string() })?;
        Self::parse(&text).map_err(|(line, msg)| CalibError::Table { path: path.to_path_buf(), line, msg })
    }

    /// Parse table text; the error is (1-based line, message).
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut t = CalibrationTable::default();
        let mut section = Section::Main;
        let mut seen_data = false;
        for (i, raw) in text.split('\n').enumerate() {
            let lineno = i + 1;
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let c = comment.trim();
                match c {
                    "int4_th" => section = Section::Int4,
                    "asym_op" => section = Section::Asym,
                    "symmetric_op" => section = Section::Symmetric,
                    "weight_scale" => section = Section::WeightScale,
                    _ if section == Section::Symmetric && !c.is_empty() => t.symmetric_ops.push(c.to_string()),
                    _ if section == Section::Symmetric => {}
                    _ if section == Section::Main && !seen_data => parse_header_line(&mut t.header, line),
                    _ => {}
                }
                continue;
            }
            match section {
                Section::Main | Section::Int4 => {
                    let e = parse_entry(line).map_err(|m| (lineno, m))?;
                    if section == Section::Main {
                        seen_data = true;
                        t.entries.push(e);
                    } else {
                        t.int4.push(e);
                    }
                }
                Section::Asym => t.asym_ops.push(line.to_string()),
                Section::Symmetric => t.symmetric_ops.push(line.to_string()),
                Section::WeightScale => {
                    let mut it = line.split_whitespace();
                    let name = it.next().unwrap_or_default().to_string();
                    let vals = it.map(|s| parse_num(s).map_err(|m| (lineno, m))).collect::<Result<Vec<f64>, _>>()?;
                    t.weight_scales.push((name, vals));
                }
            }
        }
        Ok(t)
    }

    /// The table text exactly as tpu-mlir writes it.
    pub fn to_text(&self) -> String {
        let h = &self.header;
        let mut s = String::new();
        if let Some(v) = &h.version {
            let _ = writeln!(s, "# mlir version: {v}");
        }
        if let Some(v) = &h.mlir {
            let _ = writeln!(s, "# mlir: {v}");
        }
        if let Some(v) = &h.generated_time {
            let _ = writeln!(s, "# genetated time: {v}");
        }
        if h.fp8 {
            s.push_str("#tpu-mlir-fp8 caliration table\n");
        }
        if let Some(v) = &h.method {
            let _ = writeln!(s, "# quantization threshold calculation method: {v}");
        }
        if let Some(v) = h.histogram_bins {
            let _ = writeln!(s, "# histogram number: {v}");
        }
        if let Some(v) = h.sample_number {
            let _ = writeln!(s, "# sample number: {v}");
        }
        for o in &h.other {
            let _ = writeln!(s, "{o}");
        }
        s.push_str("###\n");
        if let Some(v) = h.tune_number {
            let _ = writeln!(s, "# tune number: {v}");
            s.push_str("###\n");
        }
        s.push_str(COLUMNS_LINE);
        s.push('\n');
        for e in &self.entries {
            write_entry(&mut s, e);
        }
        if !self.int4.is_empty() {
            s.push_str("\n#int4_th\n");
            for e in &self.int4 {
                write_entry(&mut s, e);
            }
        }
        if !self.asym_ops.is_empty() {
            s.push_str("\n#asym_op\n");
            for n in &self.asym_ops {
                let _ = writeln!(s, "{n}");
            }
        }
        if !self.symmetric_ops.is_empty() {
            s.push_str("\n# symmetric_op\n");
            for n in &self.symmetric_ops {
                let _ = writeln!(s, "# {n}");
            }
        }
        if !self.weight_scales.is_empty() {
            s.push_str("\n#weight_scale\n");
            for (n, v) in &self.weight_scales {
                s.push_str(n);
                for x in v {
                    let _ = write!(s, " {x:.7}");
                }
                s.push('\n');
            }
        }
        s
    }

    /// Write the table atomically (temporary file in the same directory, then rename).
    pub fn write(&self, path: &Path) -> Result<(), CalibError> {
        crate::atomic_file::write(path, self.to_text().as_bytes())
            .map_err(|e| CalibError::Io { path: path.to_path_buf(), msg: e.to_string() })
    }
}

/// Known header comment lines go into their fields, anything else is kept verbatim.
fn parse_header_line(h: &mut TableHeader, line: &str) {
    let rest = |p: &str| line.strip_prefix(p).map(|r| r.trim().to_string());
    if let Some(v) = rest("# mlir version:") {
        h.version = Some(v);
    } else if let Some(v) = rest("# mlir:") {
        h.mlir = Some(v);
    } else if let Some(v) = rest("# genetated time:").or_else(|| rest("# generated time:")) {
        h.generated_time = Some(v);
    } else if let Some(v) = rest("# quantization threshold calculation method:") {
        h.method = Some(v);
    } else if let Some(v) = rest("# histogram number:").and_then(|v| v.parse().ok()) {
        h.histogram_bins = Some(v);
    } else if let Some(v) = rest("# sample number:").and_then(|v| v.parse().ok()) {
        h.sample_number = Some(v);
    } else if let Some(v) = rest("# tune number:").and_then(|v| v.parse().ok()) {
        h.tune_number = Some(v);
    } else if line.starts_with("#tpu-mlir-fp8") {
        h.fp8 = true;
    } else if line == "###"
        || line.split_whitespace().collect::<Vec<_>>() == ["#", "op_name", "threshold", "min", "max"]
    {
        // structural lines, regenerated by the writer
    } else {
        h.other.push(line.to_string());
    }
}

fn parse_num(s: &str) -> Result<f64, String> {
    s.parse::<f64>().map_err(|_| format!("'{s}' is not a number"))
}

fn parse_entry(line: &str) -> Result<CalibEntry, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 4 {
        return Err(format!("expected 'op_name threshold min max' (4 fields), found {} field(s): '{line}'", f.len()));
    }
    Ok(CalibEntry { name: f[0].to_string(), threshold: parse_num(f[1])?, min: parse_num(f[2])?, max: parse_num(f[3])? })
}

fn write_entry(s: &mut String, e: &CalibEntry) {
    let _ = writeln!(s, "{} {:.7} {:.7} {:.7}", e.name, e.threshold, e.min, e.max);
}

/// Current local-independent (UTC) time formatted like Python's `datetime.now()`:
/// `2026-11-30 05:28:56.828135`.
pub fn now_string() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../assets/reference/tiny-yolov3/tpu-mlir/yolov3_cali_table"
    ));

    #[test]
    fn reads_tpu_mlir_table_and_writes_it_back_byte_identical() {
        let t = CalibrationTable::parse(REF).unwrap();
        assert_eq!(t.entries.len(), 33);
        assert_eq!(t.header.version.as_deref(), Some("v1.30.2-20260831 cali version 1.0"));
        assert_eq!(t.header.method.as_deref(), Some("['kl']"));
        assert_eq!(t.header.sample_number, Some(100));
        assert_eq!(t.header.tune_number, Some(5));
        assert_eq!(t.header.histogram_bins, Some(2048));
        let c = t.get("conv2d_2_Conv").unwrap();
        assert_eq!((c.threshold, c.min, c.max), (37.4785080, -124.7378387, 50.0723343));
        let text = t.to_text();
        assert_eq!(text, REF);
        let again = CalibrationTable::parse(&text).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn reads_sections_crlf_and_reports_bad_lines() {
        let src = "# genetated time: x\r\n###\r\n# op_name    threshold    min    max\r\na 1.0 -2.0 3.0\r\n\r\n#int4_th\r\na 0.5 -0.5714286 0.5\r\n\r\n#asym_op\r\nb\r\n\r\n# symmetric_op\r\n# c\r\n\r\n#weight_scale\r\nw 0.1 0.2\r\n";
        let t = CalibrationTable::parse(src).unwrap();
        assert_eq!(t.entries, vec![CalibEntry { name: "a".into(), threshold: 1.0, min: -2.0, max: 3.0 }]);
        assert_eq!(t.int4.len(), 1);
        assert_eq!(t.asym_ops, vec!["b".to_string()]);
        assert_eq!(t.symmetric_ops, vec!["c".to_string()]);
        assert_eq!(t.weight_scales, vec![("w".to_string(), vec![0.1, 0.2])]);
        assert_eq!(CalibrationTable::parse(&t.to_text()).unwrap(), t);

        let err = CalibrationTable::parse("###\nx 1.0 2.0\n").unwrap_err();
        assert_eq!(err.0, 2);
        let err = CalibrationTable::parse("x 1.0 abc 2\n").unwrap_err();
        assert_eq!(err, (1, "'abc' is not a number".to_string()));
    }

    #[test]
    fn read_error_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("cali_table_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad_table");
        std::fs::write(&p, "# c\nname 1 2\n").unwrap();
        let msg = CalibrationTable::read(&p).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("{}:2: expected 'op_name threshold min max' (4 fields), found 3 field(s): 'name 1 2'", p.display())
        );
        let t = CalibrationTable::parse(REF).unwrap();
        let out = dir.join("out_table");
        t.write(&out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), REF);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn time_format_looks_like_python_datetime() {
        let s = now_string();
        assert_eq!(s.len(), 26);
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], " ");
        assert_eq!(&s[19..20], ".");
    }
}
