//! docs/performance.png: one panel per boot, a group of bars per size, one bar
//! per candidate: its median over the system heap's, whiskers from min to p90
//! (over the same system median), the system heap's 1.0 as a dashed line.
//! Drawn on an RGB canvas of our own; text with ab_glyph from a TrueType font.

use std::path::Path;

use ab_glyph::{point, Font, FontVec, PxScale, ScaleFont};

use crate::report::{size_label, Boot};

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const AXIS: Rgb = [60, 60, 60];
const GRID: Rgb = [222, 222, 222];
const MUTED: Rgb = [110, 110, 110];

/// Colours of the candidates (Tableau 10, without its grey); the system heap
/// and the floor get greys of their own.
const PALETTE: [Rgb; 9] = [
    [78, 121, 167],
    [242, 142, 43],
    [225, 87, 89],
    [118, 183, 178],
    [89, 161, 79],
    [237, 201, 72],
    [176, 122, 161],
    [255, 157, 167],
    [156, 117, 95],
];
const SYSTEM: Rgb = [70, 70, 70];
const FLOOR: Rgb = [186, 176, 172];

pub struct Canvas {
    w: usize,
    h: usize,
    px: Vec<Rgb>,
}

impl Canvas {
    pub fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            px: vec![WHITE; w * h],
        }
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f32) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let a = a.clamp(0.0, 1.0);
        let p = &mut self.px[y as usize * self.w + x as usize];
        for i in 0..3 {
            p[i] = (f32::from(p[i]) * (1.0 - a) + f32::from(c[i]) * a).round() as u8;
        }
    }

    /// Fills [x0, x1) x [y0, y1).
    fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, c: Rgb) {
        let (x0, x1) = (x0.min(x1).round() as i64, x0.max(x1).round() as i64);
        let (y0, y1) = (y0.min(y1).round() as i64, y0.max(y1).round() as i64);
        for y in y0..y1 {
            for x in x0..x1 {
                self.blend(x, y, c, 1.0);
            }
        }
    }

    fn outline(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, c: Rgb) {
        self.rect(x0, y0, x1, y0 + 1.0, c);
        self.rect(x0, y1 - 1.0, x1, y1, c);
        self.rect(x0, y0, x0 + 1.0, y1, c);
        self.rect(x1 - 1.0, y0, x1, y1, c);
    }

    fn hline(&mut self, x0: f32, x1: f32, y: f32, width: f32, c: Rgb, dash: Option<f32>) {
        let mut x = x0;
        while x < x1 {
            let end = dash.map_or(x1, |d| (x + d).min(x1));
            self.rect(x, y - width / 2.0, end, y + width / 2.0, c);
            x = end + dash.unwrap_or(0.0);
        }
    }

    pub fn png(&self, path: &Path) -> Result<(), String> {
        let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
        let mut enc =
            png::Encoder::new(std::io::BufWriter::new(file), self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        let data: Vec<u8> = self.px.iter().flatten().copied().collect();
        writer.write_image_data(&data).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())
    }
}

#[derive(Clone, Copy)]
enum Anchor {
    Left,
    Center,
    Right,
}

struct Text {
    font: FontVec,
}

impl Text {
    fn load(path: &Path) -> Result<Text, String> {
        let data = std::fs::read(path).map_err(|e| {
            format!(
                "font {}: {e} (install fonts-dejavu-core, or pass --font)",
                path.display()
            )
        })?;
        let font =
            FontVec::try_from_vec(data).map_err(|e| format!("font {}: {e}", path.display()))?;
        Ok(Text { font })
    }

    fn width(&self, s: &str, px: f32) -> f32 {
        let sf = self.font.as_scaled(PxScale::from(px));
        let mut w = 0.0;
        let mut prev = None;
        for ch in s.chars() {
            let id = sf.glyph_id(ch);
            if let Some(p) = prev {
                w += sf.kern(p, id);
            }
            w += sf.h_advance(id);
            prev = Some(id);
        }
        w
    }

    /// Draws `s` with its top at `y`; calls `put(x, y, coverage)` per pixel
    /// (so the caller can rotate). Returns the width.
    fn raster(&self, s: &str, px: f32, x: f32, y: f32, mut put: impl FnMut(i64, i64, f32)) -> f32 {
        let scale = PxScale::from(px);
        let sf = self.font.as_scaled(scale);
        let baseline = y + sf.ascent();
        let mut pen = x;
        let mut prev = None;
        for ch in s.chars() {
            let id = sf.glyph_id(ch);
            if let Some(p) = prev {
                pen += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, point(pen, baseline));
            if let Some(og) = self.font.outline_glyph(glyph) {
                let b = og.px_bounds();
                og.draw(|gx, gy, cov| {
                    put(
                        b.min.x as i64 + i64::from(gx),
                        b.min.y as i64 + i64::from(gy),
                        cov,
                    )
                });
            }
            pen += sf.h_advance(id);
            prev = Some(id);
        }
        pen - x
    }

    #[allow(clippy::too_many_arguments)]
    fn draw(&self, c: &mut Canvas, s: &str, px: f32, x: f32, y: f32, anchor: Anchor, color: Rgb) {
        let w = self.width(s, px);
        let x = match anchor {
            Anchor::Left => x,
            Anchor::Center => x - w / 2.0,
            Anchor::Right => x - w,
        };
        self.raster(s, px, x, y, |x, y, a| c.blend(x, y, color, a));
    }

    /// Draws `s` turned 90 degrees counter-clockwise, centred on (cx, cy).
    fn draw_up(&self, c: &mut Canvas, s: &str, px: f32, cx: f32, cy: f32, color: Rgb) {
        let w = self.width(s, px);
        let h = px;
        // Unrotated, the text spans (0..w, 0..h); (u, v) goes to (cx - h/2 + v, cy + w/2 - u).
        self.raster(s, px, 0.0, 0.0, |u, v, a| {
            let x = (cx - h / 2.0) as i64 + v;
            let y = (cy + w / 2.0) as i64 - u;
            c.blend(x, y, color, a)
        });
    }
}

/// A step of 1, 2, 2.5 or 5 times a power of ten giving at most `max` ticks.
fn tick_step(top: f64, max: usize) -> f64 {
    let raw = top / max as f64;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Colour of every candidate in any boot, in order of first appearance.
fn colours(boots: &[Boot]) -> Vec<(String, Rgb)> {
    let mut out: Vec<(String, Rgb)> = Vec::new();
    let mut next = 0;
    for b in boots {
        for c in b.plotted() {
            if out.iter().any(|(n, _)| n == c) {
                continue;
            }
            let colour = match b.kind(c) {
                Some("system") => SYSTEM,
                Some("memset") => FLOOR,
                _ => {
                    let p = PALETTE[next % PALETTE.len()];
                    next += 1;
                    p
                }
            };
            out.push((c.clone(), colour));
        }
    }
    out
}

pub fn render(boots: &[Boot], font: &Path, out: &Path) -> Result<(), String> {
    let text = Text::load(font)?;
    let colours = colours(boots);
    let colour = |name: &str| {
        colours
            .iter()
            .find(|(n, _)| n == name)
            .map_or(MUTED, |(_, c)| *c)
    };

    const W: f32 = 1600.0;
    const LEFT: f32 = 96.0;
    const RIGHT: f32 = 24.0;
    const PANEL_H: f32 = 430.0;
    let title_px = 24.0;
    let px = 17.0;
    let small = 14.0;

    // Legend rows: boxes with names, wrapped to the width.
    let mut legend_rows: Vec<Vec<(String, Rgb, f32)>> = vec![Vec::new()];
    let mut x = LEFT;
    for (name, c) in &colours {
        let wdt = 22.0 + text.width(name, px) + 28.0;
        if x + wdt > W - RIGHT && !legend_rows.last().unwrap().is_empty() {
            legend_rows.push(Vec::new());
            x = LEFT;
        }
        legend_rows.last_mut().unwrap().push((name.clone(), *c, x));
        x += wdt;
    }
    let top_h =
        20.0 + title_px + 10.0 + small + 16.0 + legend_rows.len() as f32 * (px + 10.0) + 8.0;
    let height = top_h + PANEL_H * boots.len() as f32 + 10.0;
    let mut c = Canvas::new(W as usize, height as usize);

    let mut y = 20.0;
    text.draw(
        &mut c,
        "Cost of one buffer (allocate, mmap, write every page, unmap, free) relative to the system heap",
        title_px,
        W / 2.0,
        y,
        Anchor::Center,
        BLACK,
    );
    y += title_px + 10.0;
    text.draw(
        &mut c,
        "bar: median / system heap median (lower is better); whisker: min to p90 over the same; \
         dashed: the system heap (1.0); n/a: no numbers (see docs/performance.md)",
        small,
        W / 2.0,
        y,
        Anchor::Center,
        MUTED,
    );
    y += small + 16.0;
    for row in &legend_rows {
        for (name, col, x) in row {
            c.rect(*x, y + 2.0, x + 16.0, y + px, *col);
            text.draw(&mut c, name, px, x + 22.0, y, Anchor::Left, BLACK);
        }
        y += px + 10.0;
    }
    y = top_h;

    for b in boots {
        panel(
            &mut c,
            &text,
            b,
            &colour,
            y,
            LEFT,
            W - RIGHT,
            PANEL_H,
            px,
            small,
        );
        y += PANEL_H;
    }
    c.png(out)
}

#[allow(clippy::too_many_arguments)]
fn panel(
    c: &mut Canvas,
    text: &Text,
    b: &Boot,
    colour: &dyn Fn(&str) -> Rgb,
    top: f32,
    left: f32,
    right: f32,
    height: f32,
    px: f32,
    small: f32,
) {
    let m = b.machine.as_ref();
    let nproc = m.and_then(|m| m.get("nproc")).unwrap_or("?");
    let title = format!(
        "boot {}: Linux {}, {}, {} vCPUs{}",
        b.name,
        b.kernel(),
        b.accel().to_uppercase(),
        nproc,
        if b.done {
            ""
        } else {
            " (bench did not finish)"
        }
    );
    text.draw(c, &title, px + 2.0, left, top + 8.0, Anchor::Left, BLACK);
    let plot_top = top + 8.0 + px + 24.0;
    let plot_bottom = top + height - 16.0 - px - 14.0;
    let plot_h = plot_bottom - plot_top;

    // Scale: up to the largest median ratio (and 1.2), whiskers clipped.
    let mut max_ratio: f64 = 1.2;
    for s in &b.sizes {
        for cand in b.plotted() {
            if let Some(r) = b.ratio(s, cand, "system") {
                max_ratio = max_ratio.max(r);
            }
        }
    }
    let step = tick_step(max_ratio * 1.12, 8);
    let top_ratio = (max_ratio * 1.12 / step).ceil() * step;
    let yof = |r: f64| plot_bottom - (r.min(top_ratio) / top_ratio) as f32 * plot_h;

    // Grid and y axis.
    let mut t = 0.0;
    while t <= top_ratio + 1e-9 {
        let yy = yof(t);
        c.hline(left, right, yy, 1.0, GRID, None);
        text.draw(
            c,
            &format!("{t:.2}"),
            small,
            left - 8.0,
            yy - small * 0.6,
            Anchor::Right,
            AXIS,
        );
        t += step;
    }
    c.rect(left - 1.0, plot_top, left + 1.0, plot_bottom, AXIS);
    c.rect(left, plot_bottom - 1.0, right, plot_bottom + 1.0, AXIS);
    text.draw_up(
        c,
        "ratio to system heap",
        small + 1.0,
        left - 70.0,
        (plot_top + plot_bottom) / 2.0,
        AXIS,
    );

    let n_sizes = b.sizes.len().max(1);
    let group_w = (right - left) / n_sizes as f32;
    let n_cands = b.plotted().len().max(1);
    let slot = group_w * 0.86 / n_cands as f32;
    let bar_w = (slot * 0.78).max(2.0);
    let label_px = (slot / 3.0).clamp(9.0, 13.0);
    for (gi, size) in b.sizes.iter().enumerate() {
        let gx = left + group_w * gi as f32 + group_w * 0.07;
        for (ci, cand) in b.plotted().into_iter().enumerate() {
            let x0 = gx + slot * ci as f32 + (slot - bar_w) / 2.0;
            let x1 = x0 + bar_w;
            let xm = (x0 + x1) / 2.0;
            let Some(r) = b.ratio(size, cand, "system") else {
                if b.result(size, cand).is_some() {
                    text.draw(
                        c,
                        "n/a",
                        label_px,
                        xm,
                        plot_bottom - label_px - 4.0,
                        Anchor::Center,
                        MUTED,
                    );
                }
                continue;
            };
            let yt = yof(r);
            c.rect(x0, yt, x1, plot_bottom, colour(cand));
            c.outline(x0, yt, x1, plot_bottom, [40, 40, 40]);
            let (lo, hi) = (
                b.spread_ratio(size, cand, "min"),
                b.spread_ratio(size, cand, "p90"),
            );
            let mut label_y = yt;
            if let (Some(lo), Some(hi)) = (lo, hi) {
                let (ylo, yhi) = (yof(lo), yof(hi));
                c.rect(xm - 1.0, yhi, xm + 1.0, ylo, BLACK);
                c.rect(
                    xm - bar_w / 4.0,
                    yhi - 1.0,
                    xm + bar_w / 4.0,
                    yhi + 1.0,
                    BLACK,
                );
                c.rect(
                    xm - bar_w / 4.0,
                    ylo - 1.0,
                    xm + bar_w / 4.0,
                    ylo + 1.0,
                    BLACK,
                );
                label_y = label_y.min(yhi);
            }
            text.draw(
                c,
                &format!("{r:.2}"),
                label_px,
                xm,
                (label_y - label_px - 3.0).max(plot_top - label_px - 4.0),
                Anchor::Center,
                BLACK,
            );
        }
        text.draw(
            c,
            &size_label(size),
            px,
            left + group_w * (gi as f32 + 0.5),
            plot_bottom + 8.0,
            Anchor::Center,
            BLACK,
        );
    }
    // The system heap's 1.0, over the bars.
    c.hline(left, right, yof(1.0), 2.0, [200, 30, 30], Some(8.0));
}

/// docs/peers.png: per boot, CPU time per frame of each compositor with the
/// wl_shm client and with the heap dma-buf client (lower is better).
pub fn render_peers(boots: &[Boot], font: &Path, out: &Path) -> Result<(), String> {
    let text = Text::load(font)?;
    let boots: Vec<&Boot> = boots.iter().filter(|b| !b.peers.is_empty()).collect();
    const W: f32 = 1400.0;
    const LEFT: f32 = 96.0;
    const RIGHT: f32 = 24.0;
    const PANEL_H: f32 = 360.0;
    let (title_px, px, small) = (24.0, 17.0, 14.0);
    let top_h = 20.0 + title_px + 10.0 + small + 20.0;
    let height = top_h + PANEL_H * boots.len() as f32 + 10.0;
    let mut c = Canvas::new(W as usize, height as usize);
    text.draw(
        &mut c,
        "Compositor CPU time per frame, one full-screen client redrawing every frame",
        title_px,
        W / 2.0,
        20.0,
        Anchor::Center,
        BLACK,
    );
    text.draw(
        &mut c,
        "ms of utime + stime per frame of the compositor process (lower is better); \
         n/a: no linux-dmabuf in that compositor, or it failed (see docs/performance.md)",
        small,
        W / 2.0,
        20.0 + title_px + 10.0,
        Anchor::Center,
        MUTED,
    );
    let mut top = top_h;
    for b in boots {
        let names: Vec<&str> = b
            .peers
            .iter()
            .filter_map(|l| l.words.get(2).map(String::as_str))
            .collect();
        let value = |name: &str, key: &str| {
            b.peers
                .iter()
                .find(|l| l.words.get(2).map(String::as_str) == Some(name))
                .and_then(|l| l.num(key))
        };
        let keys = [
            ("shm_cpu_per_frame", "wl_shm"),
            ("dmabuf_cpu_per_frame", "heap dma-buf"),
        ];
        let max = keys
            .iter()
            .flat_map(|(k, _)| names.iter().filter_map(|n| value(n, k)))
            .fold(0.0f64, f64::max)
            .max(0.001);
        let step = tick_step(max, 5);
        let axis_top = (max / step).ceil() * step;
        let (plot_top, plot_bottom) = (top + 40.0, top + PANEL_H - 70.0);
        let y_of = |v: f64| plot_bottom - (v / axis_top) as f32 * (plot_bottom - plot_top);
        text.draw(
            &mut c,
            &format!("boot {}", b.name),
            px,
            LEFT,
            top + 8.0,
            Anchor::Left,
            BLACK,
        );
        let mut t = 0.0;
        while t <= axis_top + 1e-9 {
            let y = y_of(t);
            c.hline(LEFT, W - RIGHT, y, 1.0, GRID, None);
            text.draw(
                &mut c,
                &format!("{t:.2}"),
                small,
                LEFT - 8.0,
                y - small / 2.0,
                Anchor::Right,
                MUTED,
            );
            t += step;
        }
        c.hline(LEFT, W - RIGHT, plot_bottom, 1.0, AXIS, None);
        let group_w = (W - RIGHT - LEFT) / keys.len() as f32;
        let bar_w = (group_w - 40.0) / names.len().max(1) as f32;
        for (g, (key, label)) in keys.iter().enumerate() {
            let x0 = LEFT + g as f32 * group_w + 20.0;
            text.draw(
                &mut c,
                label,
                px,
                x0 + (group_w - 40.0) / 2.0,
                plot_bottom + 34.0,
                Anchor::Center,
                BLACK,
            );
            for (i, name) in names.iter().enumerate() {
                let x = x0 + i as f32 * bar_w;
                let colour = PALETTE[i % PALETTE.len()];
                match value(name, key) {
                    Some(v) => {
                        c.rect(x + 3.0, y_of(v), x + bar_w - 3.0, plot_bottom, colour);
                        text.draw(
                            &mut c,
                            &format!("{v:.2}"),
                            small,
                            x + bar_w / 2.0,
                            y_of(v) - small - 4.0,
                            Anchor::Center,
                            BLACK,
                        );
                    }
                    None => text.draw(
                        &mut c,
                        "n/a",
                        small,
                        x + bar_w / 2.0,
                        plot_bottom - small - 4.0,
                        Anchor::Center,
                        MUTED,
                    ),
                }
                text.draw(
                    &mut c,
                    name,
                    small,
                    x + bar_w / 2.0,
                    plot_bottom + 8.0,
                    Anchor::Center,
                    colour,
                );
            }
        }
        top += PANEL_H;
    }
    c.png(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(tick_step(1.6, 8), 0.2);
        assert_eq!(tick_step(4.0, 8), 0.5);
        assert_eq!(tick_step(0.8, 8), 0.1);
    }

    /// Renders the sample report where the font exists (fonts-dejavu-core).
    #[test]
    fn renders_the_sample() {
        let font = Path::new(crate::report::DEFAULT_FONT);
        if !font.exists() {
            eprintln!("skipped: no {}", font.display());
            return;
        }
        let boots = crate::report::parse(&[crate::report::tests::SAMPLE.to_owned()]);
        let out =
            std::env::temp_dir().join(format!("heapland-plot-test-{}.png", std::process::id()));
        render(&boots, font, &out).unwrap();
        let decoder = png::Decoder::new(std::fs::File::open(&out).unwrap());
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width, 1600);
        let _ = std::fs::remove_file(out);
    }
}
