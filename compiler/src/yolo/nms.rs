//! Non-maximum suppression in the two flavours the tiny-yolov3 flow uses, and the iteration
//! order of a Python `set` of class ids (detect_yolov3.py runs NMS per `set(categories)`).

/// detect_yolov3.py's `nms`: greedy by descending score, keeping boxes whose IoU with the kept
/// box is `<= iou_thresh`. Quirk reproduced as-is: the `[x0, y0, x1, y1]` columns are read as
/// `x, y, width, height` (area `x1 * y1`, right edge `x0 + x1`) and `+1` is added to the
/// intersection extents. Returns the kept indices in keep order.
pub fn nms_sample(boxes: &[[f64; 4]], scores: &[f64], iou_thresh: f64) -> Vec<usize> {
    // numpy `argsort()[::-1]`: ascending (stable for these sizes), reversed
    let mut ordered: Vec<usize> = (0..scores.len()).collect();
    ordered.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    ordered.reverse();
    let area = |b: &[f64; 4]| b[2] * b[3];
    let mut keep = Vec::new();
    while let Some((&i, rest)) = ordered.split_first() {
        keep.push(i);
        let bi = &boxes[i];
        ordered = rest
            .iter()
            .copied()
            .filter(|&j| {
                let bj = &boxes[j];
                let xx1 = bi[0].max(bj[0]);
                let yy1 = bi[1].max(bj[1]);
                let xx2 = (bi[0] + bi[2]).min(bj[0] + bj[2]);
                let yy2 = (bi[1] + bi[3]).min(bj[1] + bj[3]);
                let w = (xx2 - xx1 + 1.0).max(0.0);
                let h = (yy2 - yy1 + 1.0).max(0.0);
                let inter = w * h;
                let iou = inter / (area(bi) + area(bj) - inter);
                iou <= iou_thresh
            })
            .collect();
    }
    keep
}

/// ONNX `NonMaxSuppression` (center_point_box = 0) for one class as ONNX Runtime runs it:
/// candidates with `score > score_thresh`, descending score (lower index first on ties),
/// a candidate is dropped when its IoU with an already selected box is `> iou_thresh`, at most
/// `max_boxes` selected. Boxes are `[y0, x0, y1, x1]` (corners in any order); f32 arithmetic.
pub fn nms_onnx(
    boxes: &[[f32; 4]],
    scores: &[f32],
    iou_thresh: f32,
    score_thresh: f32,
    max_boxes: usize,
) -> Vec<usize> {
    let mut cand: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > score_thresh).collect();
    cand.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut selected: Vec<usize> = Vec::new();
    for i in cand {
        if selected.len() >= max_boxes {
            break;
        }
        if selected.iter().all(|&s| !iou_above(&boxes[s], &boxes[i], iou_thresh)) {
            selected.push(i);
        }
    }
    selected
}

/// ONNX Runtime's `SuppressByIOU` test for corner boxes.
fn iou_above(a: &[f32; 4], b: &[f32; 4], thresh: f32) -> bool {
    let (ay0, ay1) = (a[0].min(a[2]), a[0].max(a[2]));
    let (ax0, ax1) = (a[1].min(a[3]), a[1].max(a[3]));
    let (by0, by1) = (b[0].min(b[2]), b[0].max(b[2]));
    let (bx0, bx1) = (b[1].min(b[3]), b[1].max(b[3]));
    let iy0 = ay0.max(by0);
    let iy1 = ay1.min(by1);
    let ix0 = ax0.max(bx0);
    let ix1 = ax1.min(bx1);
    if iy1 <= iy0 || ix1 <= ix0 {
        return false;
    }
    let inter = (iy1 - iy0) * (ix1 - ix0);
    let area_a = (ay1 - ay0) * (ax1 - ax0);
    let area_b = (by1 - by0) * (bx1 - bx0);
    let union = area_a + area_b - inter;
    if area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > thresh
}

/// The order in which CPython (3.x `setobject.c`) iterates `set(items)` for small non-negative
/// integers (whose hash is the value): open addressing in a table of 8 slots growing x4 when
/// 3/5 full, 9 linear probes then perturbed probing; iteration is slot order.
pub fn python_set_order(items: &[usize]) -> Vec<usize> {
    const LINEAR_PROBES: usize = 9;
    const PERTURB_SHIFT: u32 = 5;
    fn slot_for(table: &[Option<usize>], key: usize) -> Result<usize, usize> {
        let mask = table.len() - 1;
        let mut i = key & mask;
        let mut perturb = key;
        loop {
            let probes = if i + LINEAR_PROBES <= mask { LINEAR_PROBES } else { 0 };
            for (j, slot) in table.iter().enumerate().skip(i).take(probes + 1) {
                match *slot {
                    None => return Ok(j),
                    Some(k) if k == key => return Err(j),
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i * 5 + 1 + perturb) & mask;
        }
    }
    let mut table: Vec<Option<usize>> = vec![None; 8];
    let mut used = 0usize;
    for &key in items {
        let Ok(slot) = slot_for(&table, key) else { continue };
        table[slot] = Some(key);
        used += 1;
        let mask = table.len() - 1;
        if used * 5 >= mask * 3 {
            let minused = if used > 50_000 { used * 2 } else { used * 4 };
            let mut size = 8;
            while size <= minused {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for k in old.into_iter().flatten() {
                if let Ok(s) = slot_for(&table, k) {
                    table[s] = Some(k);
                }
            }
        }
    }
    table.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_order_matches_cpython() {
        // CPython 3.11: list(set([...]))
        assert_eq!(python_set_order(&[5, 2, 2, 5]), vec![2, 5]);
        assert_eq!(python_set_order(&[8, 0]), vec![8, 0]);
        assert_eq!(python_set_order(&[0, 8]), vec![0, 8]);
        assert_eq!(python_set_order(&[49, 0, 49]), vec![0, 49]);
        assert_eq!(python_set_order(&[9, 1, 17, 3, 62, 14, 6]), vec![1, 3, 6, 9, 14, 17, 62]);
        assert_eq!(python_set_order(&[62, 9, 1, 17, 3]), vec![1, 3, 9, 17, 62]);
        assert_eq!(python_set_order(&[16, 0, 32, 8, 24, 40]), vec![0, 32, 8, 40, 16, 24]);
    }

    #[test]
    fn sample_nms_uses_xywh_reading() {
        // Two corner boxes that overlap well as corners; read as x,y,w,h the second box is
        // far larger so the IoU is small and both survive.
        let boxes = [[10.0, 10.0, 20.0, 20.0], [12.0, 12.0, 200.0, 200.0]];
        assert_eq!(nms_sample(&boxes, &[0.9, 0.8], 0.5), vec![0, 1]);
        // identical boxes: IoU 1 (with the +1 extents slightly above) -> suppressed
        assert_eq!(nms_sample(&[[1.0, 2.0, 3.0, 4.0]; 2], &[0.7, 0.9], 0.5), vec![1]);
    }

    #[test]
    fn onnx_nms_standard_iou() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [0.0, 1.0, 10.0, 11.0], [0.0, 6.0, 10.0, 16.0]];
        // IoU(0,1) = 90/110 > 0.5 -> 1 suppressed; IoU(0,2) = 40/160 -> kept
        assert_eq!(nms_onnx(&boxes, &[0.9, 0.8, 0.7], 0.5, 0.6, 20), vec![0, 2]);
        assert_eq!(nms_onnx(&boxes, &[0.9, 0.8, 0.6], 0.5, 0.6, 20), vec![0]);
        assert_eq!(nms_onnx(&boxes, &[0.9, 0.8, 0.7], 0.5, 0.6, 1), vec![0]);
    }
}
