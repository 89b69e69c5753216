//! Which DRM format modifier a heap buffer gets.
//!
//! Heaps make linear memory. Whoever asks for a buffer names the modifiers
//! it accepts; this is the one rule that turns that list into the modifier
//! the buffer is described with, shared by `DmaHeapAllocator` and the
//! `heapland-heaps` command so that they cannot answer differently.

use drm_fourcc::{DrmFourcc as Fourcc, DrmModifier as Modifier};

use crate::{Error, Result};

/// The modifier of a heap buffer of `fourcc` for a consumer accepting
/// `modifiers`. An empty list means "anything": `LINEAR`. A list with only
/// `INVALID` means implicit modifiers, which linear memory satisfies for the
/// drivers that ask for it (dumb-buffer-like scanout). Anything else cannot
/// be produced.
pub fn pick_modifier(fourcc: Fourcc, modifiers: &[Modifier]) -> Result<Modifier> {
    linear_modifier(modifiers).ok_or_else(|| Error::UnsupportedModifiers {
        fourcc: fourcc.to_string(),
        modifiers: modifiers.iter().map(|m| format!("{m:?}")).collect(),
    })
}

/// [`pick_modifier`] without the error: `None` when no modifier asked for
/// describes linear memory.
pub fn linear_modifier(modifiers: &[Modifier]) -> Option<Modifier> {
    if modifiers.is_empty() || modifiers.contains(&Modifier::Linear) {
        Some(Modifier::Linear)
    } else if modifiers.contains(&Modifier::Invalid) {
        Some(Modifier::Invalid)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_memory_is_described_as_the_consumer_asks() {
        assert_eq!(linear_modifier(&[]), Some(Modifier::Linear));
        assert_eq!(
            linear_modifier(&[Modifier::Invalid, Modifier::Linear]),
            Some(Modifier::Linear)
        );
        assert_eq!(
            linear_modifier(&[Modifier::Invalid]),
            Some(Modifier::Invalid)
        );
        assert_eq!(linear_modifier(&[Modifier::I915_x_tiled]), None);
        assert!(pick_modifier(Fourcc::Nv12, &[Modifier::I915_x_tiled]).is_err());
    }
}
