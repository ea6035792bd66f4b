//! Drawing of detections as detect_yolov3.py's `vis` does: a 2-pixel box in the class colour,
//! a filled label background in 0.7 x that colour and the label (`car:81.7%`) in black or white.
//! Text uses the bundled DejaVu Sans (assets/fonts) instead of OpenCV's Hershey font.

use super::coco::PALETTE;
use super::Detection;
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// The bundled label font.
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// Label font size in pixels (about the size of OpenCV's FONT_HERSHEY_SIMPLEX at scale 0.4).
const LABEL_PX: f32 = 13.0;

/// Box line thickness in pixels.
const BOX_THICKNESS: i64 = 2;

/// Colour of a class as drawn: the palette entry times 255, truncated, and — as OpenCV takes
/// the sample's triples as B, G, R — reversed into R, G, B.
pub fn class_color(class: usize) -> Rgb<u8> {
    let c = PALETTE[class % PALETTE.len()];
    let v = |x: f32| (x * 255.0) as u8;
    Rgb([v(c[2]), v(c[1]), v(c[0])])
}

/// Label background colour: palette x 255 x 0.7, truncated, reversed like [`class_color`].
fn background_color(class: usize) -> Rgb<u8> {
    let c = PALETTE[class % PALETTE.len()];
    let v = |x: f32| (x * 255.0 * 0.7) as u8;
    Rgb([v(c[2]), v(c[1]), v(c[0])])
}

/// Black text on light colours (mean > 0.5), white otherwise.
fn text_color(class: usize) -> Rgb<u8> {
    let c = PALETTE[class % PALETTE.len()];
    if (c[0] + c[1] + c[2]) / 3.0 > 0.5 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

/// Fill the inclusive rectangle `[x0, x1] x [y0, y1]`, clipped to the image.
fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y0.max(0)..=y1.min(h - 1) {
        for x in x0.max(0)..=x1.min(w - 1) {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

/// Outline of the box `(x0, y0)-(x1, y1)` with edges `BOX_THICKNESS` wide, centred on the
/// corner coordinates (one pixel outside, one on the edge).
fn draw_box(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let t = BOX_THICKNESS;
    let (l, r) = (x0.min(x1), x0.max(x1));
    let (top, bottom) = (y0.min(y1), y0.max(y1));
    fill_rect(img, l - t / 2, top - t / 2, r + (t - 1) / 2, top + (t - 1) / 2, color);
    fill_rect(img, l - t / 2, bottom - t / 2, r + (t - 1) / 2, bottom + (t - 1) / 2, color);
    fill_rect(img, l - t / 2, top - t / 2, l + (t - 1) / 2, bottom + (t - 1) / 2, color);
    fill_rect(img, r - t / 2, top - t / 2, r + (t - 1) / 2, bottom + (t - 1) / 2, color);
}

/// Width and cap height of `text` in the label font, in whole pixels.
fn text_size(font: &FontRef, text: &str) -> (i64, i64) {
    let sf = font.as_scaled(PxScale::from(LABEL_PX));
    let width: f32 = text.chars().map(|ch| sf.h_advance(font.glyph_id(ch))).sum();
    (width.ceil() as i64, sf.ascent().ceil() as i64)
}

/// Render `text` with its baseline starting at (`x`, `baseline`), alpha-blended.
fn draw_text(img: &mut RgbImage, font: &FontRef, text: &str, x: i64, baseline: i64, color: Rgb<u8>) {
    let scale = PxScale::from(LABEL_PX);
    let sf = font.as_scaled(scale);
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut pen = x as f32;
    for ch in text.chars() {
        let id = font.glyph_id(ch);
        let glyph = id.with_scale_and_position(scale, ab_glyph::point(pen, baseline as f32));
        pen += sf.h_advance(id);
        let Some(outline) = font.outline_glyph(glyph) else { continue };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let px = bounds.min.x as i64 + gx as i64;
            let py = bounds.min.y as i64 + gy as i64;
            if px < 0 || py < 0 || px >= w || py >= h {
                return;
            }
            let p = img.get_pixel_mut(px as u32, py as u32);
            let a = coverage.clamp(0.0, 1.0);
            for k in 0..3 {
                p.0[k] = (p.0[k] as f32 * (1.0 - a) + color.0[k] as f32 * a).round() as u8;
            }
        });
    }
}

/// Draw every detection on `img` (RGB) as the sample's `vis` does.
pub fn draw(img: &mut RgbImage, detections: &[Detection]) {
    let Ok(font) = FontRef::try_from_slice(FONT_BYTES) else { return };
    for d in detections {
        let (x0, y0, x1, y1) = (d.x0 as i64, d.y0 as i64, d.x1 as i64, d.y1 as i64);
        let text = d.label();
        let (tw, th) = text_size(&font, &text);
        draw_box(img, x0, y0, x1, y1, class_color(d.class));
        fill_rect(img, x0, y0 + 1, x0 + tw + 1, y0 + (1.5 * th as f64) as i64, background_color(d.class));
        draw_text(img, &font, &text, x0, y0 + th, text_color(d.class));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_follow_the_sample() {
        // car: palette [0.929, 0.694, 0.125] -> BGR (236, 176, 31) -> RGB (31, 176, 236)
        assert_eq!(class_color(2), Rgb([31, 176, 236]));
        assert_eq!(background_color(2), Rgb([22, 123, 165]));
        assert_eq!(text_color(2), Rgb([0, 0, 0]));
        assert_eq!(text_color(0), Rgb([255, 255, 255]));
    }

    #[test]
    fn box_pixels_on_edges_only() {
        let mut img = RgbImage::from_pixel(120, 100, Rgb([0, 0, 0]));
        let d = Detection { class: 5, score: 0.695, x0: 20.7, y0: 30.2, x1: 90.9, y1: 80.5 };
        draw(&mut img, &[d]);
        let c = class_color(5);
        // the four edges (truncated corners 20, 30, 90, 80) carry the box colour
        assert_eq!(*img.get_pixel(55, 80), c);
        assert_eq!(*img.get_pixel(20, 60), c);
        assert_eq!(*img.get_pixel(90, 60), c);
        assert_eq!(*img.get_pixel(19, 70), c);
        // the inside below the label and the outside are untouched
        assert_eq!(*img.get_pixel(55, 60), Rgb([0, 0, 0]));
        assert_eq!(*img.get_pixel(5, 5), Rgb([0, 0, 0]));
        assert_eq!(*img.get_pixel(110, 95), Rgb([0, 0, 0]));
        // the label background spans (20, 31)..(20 + tw + 1, 30 + 1.5 th); its right column is
        // past the last glyph
        let font = FontRef::try_from_slice(FONT_BYTES).unwrap();
        let (tw, _) = text_size(&font, "bus:69.5%");
        assert_eq!(*img.get_pixel(20 + tw as u32 + 1, 31), background_color(5));
        assert_eq!(*img.get_pixel(20 + tw as u32 + 2, 40), Rgb([0, 0, 0]));
        // the bus colour is light (mean > 0.5): black text inside the filled label
        let (tw, th) = (tw as u32, text_size(&font, "bus:69.5%").1 as u32);
        let dark = (21..20 + tw)
            .flat_map(|x| (31..30 + th).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&v| v < 40))
            .count();
        assert!(dark > 20, "label text pixels: {dark}");
    }
}
