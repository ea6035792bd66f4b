//! The files run_qtable writes, in tpu-mlir's formats (walkthrough document and flow reference
//! 3.3): the quantization table and the loss table (`full_loss_table.txt`).

use super::SearchResult;
use std::fmt::Write as _;

/// Header facts shared by both files.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportHeader {
    /// Time stamp line content (`2026-11-30 05:37:03.709133`).
    pub time: String,
    /// Number of samples used.
    pub samples: usize,
    /// Chip name (`bm1684x`).
    pub chip: String,
    /// Float mode of the mixed layers (`F32`, `F16`, `BF16`).
    pub mix_mode: String,
}

/// The quantization table: header comments, then one `name MODE` line per float layer in the
/// order the search added them.
pub fn qtable_text(h: &ReportHeader, result: &SearchResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# genetated time: {}", h.time);
    let _ = writeln!(s, "# sample number: {}", h.samples);
    let _ = writeln!(s, "# chip: {}  mix_mode: {}", h.chip, h.mix_mode);
    let _ = writeln!(s, "# number of {} layer: {}", h.mix_mode, result.float_layers.len());
    let _ = writeln!(s, "###");
    let _ = writeln!(s, "# op_name   quantize_mode");
    for name in &result.float_layers {
        let _ = writeln!(s, "{} {}", name, h.mix_mode);
    }
    s
}

/// The loss table: header, then `No.N   : Layer: NAME<pad>\t\t\tCos: X` sorted by cos ascending
/// (ties keep walk order), the cos printed with full precision as the walkthrough shows it.
pub fn loss_table_text(h: &ReportHeader, result: &SearchResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# genetated time: {}", h.time);
    let _ = writeln!(s, "# sample number: {}", h.samples);
    let _ = writeln!(s, "# chip: {}  mix_mode: {}", h.chip, h.mix_mode);
    let _ = writeln!(s, "###");
    let mut sorted: Vec<&(String, f64)> = result.losses.iter().collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (i, (name, cos)) in sorted.iter().enumerate() {
        let _ = writeln!(s, "No.{:<4}: Layer: {:<50}\t\t\tCos: {}", i, name, cos);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> SearchResult {
        SearchResult {
            int8_cos: 0.9991,
            mixed_cos: 0.9996,
            losses: vec![("conv2d_1_Conv".into(), 0.9998), ("leaky_re_lu_3_LeakyRelu".into(), 0.996855)],
            float_layers: vec!["leaky_re_lu_3_LeakyRelu".into(), "max_pooling2d_5_MaxPool".into()],
            trials: vec![],
            int8_enough: false,
            reached: false,
        }
    }

    fn header() -> ReportHeader {
        ReportHeader { time: "2026-11-30 05:37:03".into(), samples: 30, chip: "bm1684x".into(), mix_mode: "F32".into() }
    }

    #[test]
    fn loss_table_is_sorted_and_formatted_like_tpu_mlir() {
        let t = loss_table_text(&header(), &result());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[2], "# chip: bm1684x  mix_mode: F32");
        assert_eq!(lines[3], "###");
        assert_eq!(lines[4], "No.0   : Layer: leaky_re_lu_3_LeakyRelu                           \t\t\tCos: 0.996855");
        assert!(lines[5].starts_with("No.1   : Layer: conv2d_1_Conv "));
        assert!(lines[5].ends_with("Cos: 0.9998"));
    }

    #[test]
    fn qtable_lists_float_layers_in_search_order() {
        let t = qtable_text(&header(), &result());
        let data: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(data, vec!["leaky_re_lu_3_LeakyRelu F32", "max_pooling2d_5_MaxPool F32"]);
        assert!(t.contains("# op_name   quantize_mode\n"));
        assert!(t.contains("# number of F32 layer: 2\n"));
    }
}
