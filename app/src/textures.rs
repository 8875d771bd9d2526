//! A bounded texture cache: pictures become GPU textures once, are reused by key, and the
//! least recently used go when the cache is full, so memory stays bounded however long a
//! run is watched.

use std::collections::HashMap;

use egui::{ColorImage, TextureHandle, TextureOptions};

/// Textures kept at most.
pub const TEXTURES_KEPT: usize = 384;

#[derive(Default)]
pub struct TextureCache {
    map: HashMap<String, (TextureHandle, u64)>,
    frame: u64,
}

impl TextureCache {
    /// Call once per frame.
    pub fn next_frame(&mut self) {
        self.frame += 1;
        if self.map.len() > TEXTURES_KEPT {
            let mut ages: Vec<(u64, String)> =
                self.map.iter().map(|(k, (_, f))| (*f, k.clone())).collect();
            ages.sort();
            for (_, key) in ages.iter().take(self.map.len() - TEXTURES_KEPT) {
                self.map.remove(key);
            }
        }
    }

    /// The texture under `key`, made by `make` if it is not cached.
    pub fn get(
        &mut self,
        ctx: &egui::Context,
        key: &str,
        make: impl FnOnce() -> ColorImage,
    ) -> TextureHandle {
        if let Some((handle, used)) = self.map.get_mut(key) {
            *used = self.frame;
            return handle.clone();
        }
        let handle = ctx.load_texture(key, make(), TextureOptions::NEAREST);
        self.map
            .insert(key.to_string(), (handle.clone(), self.frame));
        handle
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
