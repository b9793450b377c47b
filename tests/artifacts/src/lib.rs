//! Paths of the bundled plugins and hostile fixtures, built for
//! wasm32-wasip2 by this crate's build script.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The bundled plugins as `(file name, path)`, as `cargo xtask plugins` names them.
pub const BUNDLED: &[(&str, &str)] = &[
    ("sword.wasm", SWORD),
    ("horse.wasm", HORSE),
    ("guild.wasm", GUILD),
    ("default.wasm", DEFAULT),
    ("spellbook.wasm", SPELLBOOK),
];
