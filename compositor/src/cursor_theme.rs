//! The pointer's look: images from an installed xcursor theme (Debian's
//! adwaita-icon-theme, which `default` inherits), for the shapes clients
//! name through `wp_cursor_shape_v1` and for the arrow shown where no
//! client set a cursor. Programs heapland starts get the same theme and
//! size (`XCURSOR_THEME`, `XCURSOR_SIZE`), and so does Xwayland's root
//! window.
//!
//! Each shape is read from disk once per output scale and kept. Animated
//! shapes (`wait`, `progress`) show their first frame. A shape the theme
//! lacks, or a theme that is not installed, falls back to a small square
//! drawn without images.

use std::{cell::RefCell, collections::HashMap};

use smithay::{
    backend::{allocator::Fourcc, renderer::element::memory::MemoryRenderBuffer},
    utils::{Logical, Point, Transform},
};
use tracing::{info, warn};

/// One shape at one scale, ready to draw.
#[derive(Debug, Clone)]
pub struct CursorImage {
    pub buffer: MemoryRenderBuffer,
    pub hotspot: Point<i32, Logical>,
}

/// An xcursor image's first frame as its file has it: little-endian ARGB32
/// (B, G, R, A in memory), which is DRM's ARGB8888 and X11's ARGB32
/// picture format.
pub struct XcursorPixels {
    pub pixels: Vec<u8>,
    pub size: (u16, u16),
    pub hotspot: (u16, u16),
}

/// The configured theme and the shapes read from it so far.
pub struct CursorTheme {
    theme: xcursor::CursorTheme,
    name: String,
    size: u32,
    /// By shape name (a cursor-shape name, static) and scale: looked up
    /// every frame the cursor is drawn, without allocating.
    loaded: RefCell<HashMap<(&'static str, i32), Option<CursorImage>>>,
}

impl CursorTheme {
    /// `name` empty: `XCURSOR_THEME`, else `default`. `size` 0:
    /// `XCURSOR_SIZE`, else 24.
    pub fn load(name: &str, size: u32) -> Self {
        let name = match name {
            "" => std::env::var("XCURSOR_THEME").unwrap_or_else(|_| "default".into()),
            name => name.to_owned(),
        };
        let size = match size {
            0 => std::env::var("XCURSOR_SIZE")
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|s| (1..=256).contains(s))
                .unwrap_or(24),
            size => size,
        };
        let mut theme = CursorTheme {
            theme: xcursor::CursorTheme::load(&name),
            name,
            size,
            loaded: RefCell::default(),
        };
        if theme.image("default", 1).is_none() && theme.name == "default" {
            // "default" is what the system's alternatives name (Debian:
            // /etc/alternatives/x-cursor-theme); without them, Debian's own.
            theme = CursorTheme {
                theme: xcursor::CursorTheme::load("Adwaita"),
                name: "Adwaita".into(),
                size,
                loaded: RefCell::default(),
            };
        }
        if theme.image("default", 1).is_some() {
            info!("cursor theme {:?}, size {}", theme.name, theme.size);
        } else {
            warn!(
                "cursor theme {:?} has no default cursor (install adwaita-icon-theme): a square shows where the pointer is",
                theme.name
            );
        }
        theme
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// The shape `name` for an output of integer scale `scale`, if the
    /// theme has it.
    pub fn image(&self, name: &'static str, scale: i32) -> Option<CursorImage> {
        let scale = scale.max(1);
        let key = (name, scale);
        if let Some(image) = self.loaded.borrow().get(&key) {
            return image.clone();
        }
        let image = self.read(name, scale).map(|pixels| CursorImage {
            buffer: MemoryRenderBuffer::from_slice(
                &pixels.pixels,
                Fourcc::Argb8888,
                (i32::from(pixels.size.0), i32::from(pixels.size.1)),
                scale,
                Transform::Normal,
                None,
            ),
            hotspot: Point::from((
                i32::from(pixels.hotspot.0) / scale,
                i32::from(pixels.hotspot.1) / scale,
            )),
        });
        self.loaded.borrow_mut().insert(key, image.clone());
        image
    }

    /// The shape `name` as its file has it, at the configured size.
    pub fn pixels(&self, name: &str) -> Option<XcursorPixels> {
        self.read(name, 1)
    }

    /// The first frame of the image nearest `size * scale` pixels.
    fn read(&self, name: &str, scale: i32) -> Option<XcursorPixels> {
        let path = self.theme.load_icon(name)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| warn!("cursor {}: {e}", path.display()))
            .ok()?;
        let images = xcursor::parser::parse_xcursor(&bytes)?;
        let want = self.size * scale.unsigned_abs();
        let nearest = images.iter().min_by_key(|i| i.size.abs_diff(want))?.size;
        let image = images.into_iter().find(|i| i.size == nearest)?;
        let (w, h) = (
            u16::try_from(image.width).ok()?,
            u16::try_from(image.height).ok()?,
        );
        let hotspot = (
            u16::try_from(image.xhot).ok()?,
            u16::try_from(image.yhot).ok()?,
        );
        let len = usize::from(w) * usize::from(h) * 4;
        // `pixels_rgba` is the file's byte order (the crate's name for it
        // notwithstanding); `pixels_argb` is the same rotated by a byte.
        (image.pixels_rgba.len() >= len).then_some(XcursorPixels {
            pixels: image.pixels_rgba,
            size: (w, h),
            hotspot,
        })
    }
}
