//! Which DRM format modifier a heap buffer gets.
//!
//! Heaps make linear memory. Whoever asks for a buffer names the modifiers
//! it accepts; this is the one rule that turns that list into the modifier
//! the buffer is described with, shared by `HeapAllocator` and the
//! `heapland-heaps` command so that they cannot answer differently.

use drm_fourcc::{DrmFourcc as Fourcc, DrmModifier as Modifier};

use crate::{Error, Result};

/// The modifier of a heap buffer of `fourcc` for a consumer accepting
/// `modifiers`. An empty list means "anything": `LINEAR`. A list with only
/// `INVALID` means implicit modifiers, which linear memory satisfies for the
/// drivers that ask for it (dumb-buffer-like scanout). Anything else cannot
/// be produced.
pub fn pick_modifier(fourcc: Fourcc, modifiers: &[Modifier]) -> Result<Modifier> {
    if modifiers.is_empty() || modifiers.contains(&Modifier::Linear) {
        Ok(Modifier::Linear)
    } else if modifiers.contains(&Modifier::Invalid) {
        Ok(Modifier::Invalid)
    } else {
        Err(Error::UnsupportedModifiers {
            fourcc: fourcc.to_string(),
            modifiers: modifiers.iter().map(|m| format!("{m:?}")).collect(),
        })
    }
}
