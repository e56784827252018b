//! The on-disk cache of compiled CUDA modules (and of emulation libraries).
//!
//! Location: `$FLEXSN_CACHE_DIR` if set, else `$XDG_CACHE_HOME/flexsn`, else `~/.cache/flexsn`,
//! else a folder under the system temp dir. Entries are written to a temporary file and renamed,
//! so concurrent processes never read a half-written entry. A cache that cannot be written is
//! not an error: the module is simply compiled again next time.

use std::path::{Path, PathBuf};

/// Environment variable naming the cache folder.
pub const CACHE_DIR_ENV: &str = "FLEXSN_CACHE_DIR";

/// The cache root folder (not created).
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("flexsn");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".cache").join("flexsn");
    }
    std::env::temp_dir().join("flexsn-cache")
}

/// The folder `sub` of the cache root, created if needed; `None` if it cannot be created.
pub fn cache_subdir(sub: &str) -> Option<PathBuf> {
    let d = cache_root().join(sub);
    std::fs::create_dir_all(&d).ok()?;
    Some(d)
}

/// Reads a cache entry, if present.
pub fn read(dir: &Path, file: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join(file)).ok()
}

/// Writes a cache entry atomically (temp file + rename); errors are ignored.
pub fn write(dir: &Path, file: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{file}.{}.{}.tmp", std::process::id(), unique()));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, dir.join(file)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// A number unique within this process (for temp file names).
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Hex blake3 of the parts, separated so that ("ab", "c") and ("a", "bc") differ.
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex().to_string()
}
