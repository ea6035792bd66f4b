//! The mixed-precision table (`--quantize_table`): `name mode` lines (flow reference 3.7).

use super::chip::{Chip, Mode};
use super::LowerError;
use std::collections::BTreeMap;

/// Per-layer modes by layer name.
pub type QTable = BTreeMap<String, Mode>;

/// Parse a qtable text: empty lines and `#` lines are ignored, `\r` stripped, a line with only a
/// name is ignored, `name mode` sets the mode (case-insensitive). On CV18xx `F32`/`F16` become
/// `BF16`; a float mode the chip lacks is an error.
pub fn parse_qtable(text: &str, chip: Chip) -> Result<QTable, LowerError> {
    let mut map = QTable::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.split_whitespace();
        let name = it.next().unwrap_or_default();
        let Some(mode_s) = it.next() else { continue };
        if it.next().is_some() {
            return Err(LowerError::QTable { line: i + 1, msg: format!("expected 'name mode', got '{line}'") });
        }
        let mut mode = Mode::parse(mode_s)
            .ok_or_else(|| LowerError::QTable { line: i + 1, msg: format!("unknown mode '{mode_s}' for '{name}'") })?;
        if chip.is_cv18xx() && matches!(mode, Mode::F32 | Mode::F16) {
            mode = Mode::BF16;
        }
        if mode != Mode::Int8 && !chip.float_modes().contains(&mode) {
            return Err(LowerError::mode_not_supported(chip, mode));
        }
        map.insert(name.to_string(), mode);
    }
    Ok(map)
}

/// Levenshtein distance (for "did you mean" lists).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The `n` names closest to `name`.
pub(crate) fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>, n: usize) -> Vec<String> {
    let mut v: Vec<(usize, &str)> = candidates.map(|c| (edit_distance(name, c), c)).collect();
    v.sort();
    v.into_iter().take(n).map(|(_, c)| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps_cv_float_modes() {
        let t = "# c\n\nconv1 f32\r\nlrelu F16\nonlyname\n";
        let bm = parse_qtable(t, Chip::Bm1684x).unwrap();
        assert_eq!(bm["conv1"], Mode::F32);
        assert_eq!(bm["lrelu"], Mode::F16);
        assert_eq!(bm.len(), 2);
        let cv = parse_qtable(t, Chip::Cv183x).unwrap();
        assert_eq!(cv["conv1"], Mode::BF16);
        assert_eq!(cv["lrelu"], Mode::BF16);
    }

    #[test]
    fn rejects_bad_lines() {
        let e = parse_qtable("a b c\n", Chip::Bm1684x).unwrap_err();
        assert_eq!(e.to_string(), "quantize table line 1: expected 'name mode', got 'a b c'");
        let e = parse_qtable("a F16\n", Chip::Bm1684).unwrap_err();
        assert_eq!(e.to_string(), "mode F16 is not supported on bm1684 (float modes: F32)");
    }

    #[test]
    fn closest_names() {
        let c = closest("conv2d_2_Con", ["conv2d_2_Conv", "conv2d_3_Conv", "xyz"].into_iter(), 2);
        assert_eq!(c, vec!["conv2d_2_Conv".to_string(), "conv2d_3_Conv".to_string()]);
    }
}
