//! How closely a quantized model's detections agree with the float model's on the same photos.
//!
//! The walkthrough judges INT8 against float by reading the detections printed for one photo.
//! One photo is a noisy judge (a score moves by whole quantization steps), so this module scores
//! the agreement over many: each reference detection is matched to the same-class detection of the
//! other model that overlaps it most (IoU at least the threshold); a matched pair costs the score
//! difference, a missed or an extra detection costs its whole score. Scores are in percent points.

use super::Detection;

/// The agreement of one model's detections with the reference's on one photo.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImageAgreement {
    /// Reference detections found by the other model (same class, enough overlap).
    pub matched: usize,
    /// Reference detections the other model does not find.
    pub missed: usize,
    /// Detections of the other model with no reference counterpart.
    pub extra: usize,
    /// Sum of |score difference| over the matched pairs, in percent points.
    pub matched_distance: f64,
    /// `matched_distance` plus the scores of the missed and the extra detections (points).
    pub distance: f64,
}

/// Intersection over union of two boxes in pixels (0 when either is empty).
pub fn iou(a: &Detection, b: &Detection) -> f64 {
    let w = (a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0);
    let h = (a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0);
    let inter = w * h;
    let area = |d: &Detection| (d.x1 - d.x0).max(0.0) * (d.y1 - d.y0).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Match `other` against `reference` (both one photo's detections). Reference detections are
/// taken from the highest score down; each takes the unused same-class detection of `other`
/// that overlaps it most, when that overlap is at least `iou_thresh`.
pub fn compare(reference: &[Detection], other: &[Detection], iou_thresh: f64) -> ImageAgreement {
    let mut order: Vec<usize> = (0..reference.len()).collect();
    order.sort_by(|&a, &b| reference[b].score.total_cmp(&reference[a].score));
    let mut used = vec![false; other.len()];
    let mut out = ImageAgreement::default();
    for r in order.into_iter().map(|i| &reference[i]) {
        let best = other
            .iter()
            .enumerate()
            .filter(|(j, o)| !used[*j] && o.class == r.class)
            .map(|(j, o)| (j, iou(r, o)))
            .filter(|&(_, v)| v >= iou_thresh)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((j, _)) => {
                used[j] = true;
                out.matched += 1;
                out.matched_distance += (other[j].score - r.score).abs() * 100.0;
            }
            None => {
                out.missed += 1;
                out.distance += r.score * 100.0;
            }
        }
    }
    for (o, _) in other.iter().zip(&used).filter(|(_, u)| !**u) {
        out.extra += 1;
        out.distance += o.score * 100.0;
    }
    out.distance += out.matched_distance;
    out
}

/// The agreement summed over many photos.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AgreementSummary {
    /// Photos compared.
    pub images: usize,
    /// Sums of the per-photo figures.
    pub total: ImageAgreement,
}

impl AgreementSummary {
    /// Add one photo.
    pub fn add(&mut self, a: &ImageAgreement) {
        self.images += 1;
        self.total.matched += a.matched;
        self.total.missed += a.missed;
        self.total.extra += a.extra;
        self.total.matched_distance += a.matched_distance;
        self.total.distance += a.distance;
    }

    /// Mean distance per photo, in points (0 when no photo was added).
    pub fn mean_distance(&self) -> f64 {
        if self.images == 0 {
            0.0
        } else {
            self.total.distance / self.images as f64
        }
    }

    /// Mean |score difference| of a matched detection, in points.
    pub fn mean_matched_difference(&self) -> f64 {
        if self.total.matched == 0 {
            0.0
        } else {
            self.total.matched_distance / self.total.matched as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: usize, score: f64, x0: f64, y0: f64, x1: f64, y1: f64) -> Detection {
        Detection { class, score, x0, y0, x1, y1 }
    }

    #[test]
    fn iou_of_overlapping_and_disjoint_boxes() {
        let a = det(0, 0.5, 0.0, 0.0, 10.0, 10.0);
        let b = det(0, 0.5, 5.0, 0.0, 15.0, 10.0);
        assert!((iou(&a, &b) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(iou(&a, &det(0, 0.5, 20.0, 20.0, 30.0, 30.0)), 0.0);
        assert_eq!(iou(&a, &det(0, 0.5, 3.0, 3.0, 3.0, 9.0)), 0.0);
    }

    #[test]
    fn matched_missed_and_extra_detections_cost_what_they_should() {
        // Reference: two cars and a bus. Other: the first car a little lower, the second car
        // with the wrong class at its place (so missed + extra), the bus found.
        let reference = [
            det(2, 0.817, 0.0, 0.0, 100.0, 100.0),
            det(2, 0.726, 200.0, 0.0, 300.0, 100.0),
            det(5, 0.695, 0.0, 200.0, 100.0, 300.0),
        ];
        let other = [
            det(5, 0.690, 2.0, 202.0, 100.0, 300.0),
            det(2, 0.800, 1.0, 1.0, 101.0, 101.0),
            det(7, 0.600, 200.0, 0.0, 300.0, 100.0),
        ];
        let a = compare(&reference, &other, 0.5);
        assert_eq!((a.matched, a.missed, a.extra), (2, 1, 1));
        assert!((a.matched_distance - (1.7 + 0.5)).abs() < 1e-9, "{a:?}");
        assert!((a.distance - (1.7 + 0.5 + 72.6 + 60.0)).abs() < 1e-9, "{a:?}");
        // Identical detections agree perfectly.
        let same = compare(&reference, &reference, 0.5);
        assert_eq!((same.matched, same.missed, same.extra, same.distance), (3, 0, 0, 0.0));
    }

    #[test]
    fn a_box_is_matched_once_and_to_the_best_overlap() {
        // Two reference cars side by side; the other model has one box over the second car.
        let reference = [det(2, 0.9, 0.0, 0.0, 10.0, 10.0), det(2, 0.8, 6.0, 0.0, 16.0, 10.0)];
        let other = [det(2, 0.7, 6.0, 0.0, 16.0, 10.0)];
        let a = compare(&reference, &other, 0.3);
        // The 0.9 car goes first but overlaps the box by 4/16 < 0.3: missed; the 0.8 car matches.
        assert_eq!((a.matched, a.missed, a.extra), (1, 1, 0));
        assert!((a.distance - (10.0 + 90.0)).abs() < 1e-9);
        let mut s = AgreementSummary::default();
        s.add(&a);
        s.add(&compare(&reference, &reference, 0.3));
        assert_eq!(s.images, 2);
        assert!((s.mean_distance() - 50.0).abs() < 1e-9);
        assert!((s.mean_matched_difference() - 10.0 / 3.0).abs() < 1e-9);
    }
}
