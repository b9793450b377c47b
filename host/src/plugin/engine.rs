//! The one wasmtime engine of the process, its epoch ticker (the clock of
//! CPU deadlines) and compilation with an on-disk `.cwasm` cache keyed by
//! wasmtime version, engine configuration and the wasm's hash.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

use super::LoadError;
use super::log::LogConfig;
use super::sandbox::Limits;

/// How often the epoch advances; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Runtime settings.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub limits: Limits,
    /// Where compiled plugins are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// What plugins' log lines are kept (contract 0.2).
    pub log: LogConfig,
}

/// The engine shared by every plugin, with its ticker thread.
pub struct Runtime {
    engine: Engine,
    config: RuntimeConfig,
    stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Arc<Self>> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        let engine = Engine::new(&cfg).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker, stopped) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Arc::new(Runtime {
            engine,
            config,
            stop,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> Limits {
        self.config.limits
    }

    pub fn log_config(&self) -> LogConfig {
        self.config.log
    }

    /// Epoch ticks that make up the per-call deadline (rounded up, plus the
    /// partial tick in progress when the call starts).
    pub fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_micros().max(1);
        (self.config.limits.deadline.as_micros().div_ceil(tick) as u64).max(1) + 1
    }

    /// Compiles a component, through the cache when one is configured.
    pub fn compile(&self, wasm: &[u8]) -> Result<Component, LoadError> {
        check_header(wasm)?;
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, wasm).map_err(not_component);
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(wasm)));
        if path.exists() {
            // SAFETY: files in the cache directory are written only by
            // `store` below from `precompile_component` of this same engine
            // configuration and wasmtime version (both are in the key); the
            // cache directory is trusted like the binary itself.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}")
                }
            }
        }
        let cwasm = self
            .engine
            .precompile_component(wasm)
            .map_err(not_component)?;
        if let Err(e) = store(&path, &cwasm) {
            tracing::warn!(path = %path.display(), "cannot write plugin cache: {e}");
        }
        // SAFETY: the bytes were produced just above by this engine.
        unsafe { Component::deserialize(&self.engine, &cwasm) }.map_err(not_component)
    }

    /// sha256 over wasmtime's version, the engine's compatibility hash and
    /// the wasm bytes.
    pub fn cache_key(&self, wasm: &[u8]) -> String {
        let mut h = Sha256Hasher(Sha256::new());
        h.0.update(b"wasmtime 48.0.8\0");
        self.engine.precompile_compatibility_hash().hash(&mut h);
        h.0.update(wasm);
        hex::encode(h.0.finalize())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn not_component(e: wasmtime::Error) -> LoadError {
    let text = format!("{e:#}");
    LoadError::NotComponent(
        text.lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches([' ', '[', '='])
            .to_owned(),
    )
}

/// Tells a component from a core module or from something else entirely.
fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_LAYER: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    if !wasm.starts_with(MAGIC) {
        return Err(LoadError::NotComponent(
            "the file has no WebAssembly header (\\0asm)".into(),
        ));
    }
    if wasm.get(4..8) != Some(COMPONENT_LAYER) {
        return Err(LoadError::NotComponent(
            "this is a core WebAssembly module; plugins are components (build for wasm32-wasip2)"
                .into(),
        ));
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so readers never see a
/// partial entry.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
