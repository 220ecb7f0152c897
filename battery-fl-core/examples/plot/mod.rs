//! A minimal PNG line/scatter plotter for the examples (no fonts or system libraries needed):
//! axes with numeric tick labels drawn in a built-in 3x5 pixel font.

use std::path::Path;

use anyhow::Result;

/// An RGB canvas.
pub struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

const FONT: [(char, [u8; 5]); 14] = [
    ('0', [7, 5, 5, 5, 7]),
    ('1', [2, 6, 2, 2, 7]),
    ('2', [7, 1, 7, 4, 7]),
    ('3', [7, 1, 7, 1, 7]),
    ('4', [5, 5, 7, 1, 1]),
    ('5', [7, 4, 7, 1, 7]),
    ('6', [7, 4, 7, 5, 7]),
    ('7', [7, 1, 1, 1, 1]),
    ('8', [7, 5, 7, 5, 7]),
    ('9', [7, 5, 7, 1, 7]),
    ('.', [0, 0, 0, 0, 2]),
    ('-', [0, 0, 7, 0, 0]),
    ('e', [0, 7, 7, 4, 7]),
    (' ', [0, 0, 0, 0, 0]),
];

/// Series colours.
pub const COLORS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
                self.set(x.round() as i64 + dx, y.round() as i64 + dy, c);
            }
        }
    }

    fn dot(&mut self, (x, y): (f64, f64), c: [u8; 3]) {
        for dx in -2..=2 {
            for dy in -2..=2 {
                if dx * dx + dy * dy <= 5 {
                    self.set(x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str) {
        for (k, ch) in s.chars().enumerate() {
            let glyph = FONT.iter().find(|(c, _)| *c == ch).map_or([0; 5], |g| g.1);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for (sx, sy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(
                                x + k as i64 * 8 + col * 2 + sx,
                                y + row as i64 * 2 + sy,
                                [0, 0, 0],
                            );
                        }
                    }
                }
            }
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut enc = png::Encoder::new(file, self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&self.px)?;
        Ok(())
    }
}

fn label(v: f64) -> String {
    if v.abs() >= 1000.0 || v.abs() < 0.01 && v != 0.0 {
        format!("{v:.1e}").replace("e0", "e").replace('+', "")
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Plot series (each a list of (x, y) points) as lines or dots into a PNG; `diagonal` draws
/// y = x (for predicted-vs-true plots).
pub fn plot(path: &Path, series: &[Vec<(f64, f64)>], lines: bool, diagonal: bool) -> Result<()> {
    let (w, h, m) = (640usize, 480usize, 60.0);
    let mut c = Canvas::new(w, h);
    let pts = series.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if diagonal {
        let (lo, hi) = (x0.min(y0), x1.max(y1));
        (x0, x1, y0, y1) = (lo, hi, lo, hi);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let (pw, ph) = (w as f64 - 2.0 * m, h as f64 - 2.0 * m);
    let tx = |x: f64| m + (x - x0) / (x1 - x0) * pw;
    let ty = |y: f64| h as f64 - m - (y - y0) / (y1 - y0) * ph;
    let black = [0, 0, 0];
    c.line((m, h as f64 - m), (w as f64 - m, h as f64 - m), black);
    c.line((m, m), (m, h as f64 - m), black);
    for k in 0..=4 {
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        c.line((tx(fx), h as f64 - m), (tx(fx), h as f64 - m + 5.0), black);
        c.text(tx(fx) as i64 - 12, h as i64 - m as i64 + 10, &label(fx));
        c.line((m - 5.0, ty(fy)), (m, ty(fy)), black);
        c.text(4, ty(fy) as i64 - 5, &label(fy));
    }
    if diagonal {
        c.line((tx(x0), ty(x0)), (tx(x1), ty(x1)), [160, 160, 160]);
    }
    for (i, s) in series.iter().enumerate() {
        let col = COLORS[i % COLORS.len()];
        for (k, &(x, y)) in s.iter().enumerate() {
            if lines && k > 0 {
                let (px, py) = s[k - 1];
                c.line((tx(px), ty(py)), (tx(x), ty(y)), col);
            }
            c.dot((tx(x), ty(y)), col);
        }
    }
    c.save(path)
}
