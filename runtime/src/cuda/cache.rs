//! The on-disk cache of compiled CUDA modules (and of emulation libraries).
//!
//! Location: `$FLEXSN_CACHE_DIR` if set, else `$XDG_CACHE_HOME/flexsn`, else `~/.cache/flexsn`;
//! with none of these, nothing is cached on disk. The folders are created with mode 0700 and
//! used only when they belong to the current user and nobody else can write them (a shared
//! temporary folder is never used).
//!
//! Every entry starts with the blake3 hash of its content, checked on every read: a truncated,
//! corrupt or altered entry is deleted and rebuilt, never used. Entries are written to a
//! securely created temporary file in the same folder and renamed, so concurrent processes
//! never read a half-written entry. A cache that cannot be written is not an error: the module
//! is simply compiled again next time.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable naming the cache folder.
pub const CACHE_DIR_ENV: &str = "FLEXSN_CACHE_DIR";

/// Bytes of the content hash at the start of every entry.
const HASH_LEN: usize = blake3::OUT_LEN;

/// The cache root folder (not created), or `None` when no per-user location is known.
pub fn cache_root() -> Option<PathBuf> {
    root_from(&|name| std::env::var_os(name))
}

/// [`cache_root`] for the environment `env`.
fn root_from(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name| env(name).filter(|d| !d.is_empty()).map(PathBuf::from);
    var(CACHE_DIR_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("flexsn")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("flexsn")))
}

/// The folder `sub` of the cache root, created if needed; `None` if there is no root or the
/// folder cannot be created or is not private to this user.
pub fn cache_subdir(sub: &str) -> Option<PathBuf> {
    let root = cache_root()?;
    private_dir(&root)?;
    let d = root.join(sub);
    private_dir(&d)?;
    Some(d)
}

/// Creates `dir` (mode 0700) if needed and checks that it is ours and private.
#[cfg(unix)]
pub(crate) fn private_dir(dir: &Path) -> Option<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .ok()?;
    let meta = std::fs::metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    // Our user id is the owner of a file we create (no libc call needed).
    let probe = tempfile::tempfile_in(dir).ok()?;
    if probe.metadata().ok()?.uid() != meta.uid() {
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).ok()?;
    }
    Some(())
}

/// Creates `dir` if needed (no ownership model to check off Unix).
#[cfg(not(unix))]
pub(crate) fn private_dir(dir: &Path) -> Option<()> {
    std::fs::create_dir_all(dir).ok()
}

/// Reads a cache entry: its content if present and intact. A corrupt entry is deleted.
pub fn read(dir: &Path, file: &str) -> Option<Vec<u8>> {
    let path = dir.join(file);
    let mut bytes = std::fs::read(&path).ok()?;
    let intact = bytes.len() >= HASH_LEN
        && blake3::hash(&bytes[HASH_LEN..]).as_bytes()[..] == bytes[..HASH_LEN];
    if !intact {
        let _ = std::fs::remove_file(&path);
        return None;
    }
    bytes.drain(..HASH_LEN);
    Some(bytes)
}

/// Writes a cache entry (its hash, then `bytes`) atomically; errors are ignored.
pub fn write(dir: &Path, file: &str, bytes: &[u8]) {
    let written = (|| -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(blake3::hash(bytes).as_bytes())?;
        tmp.write_all(bytes)?;
        tmp.persist(dir.join(file)).map_err(|e| e.error)?;
        Ok(())
    })();
    // A failed write leaves no file behind (the temporary file deletes itself).
    let _ = written;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_per_user_or_none() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            root_from(&env(&[("HOME", "/h"), (CACHE_DIR_ENV, "/c")])),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            root_from(&env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])),
            Some(PathBuf::from("/x/flexsn"))
        );
        assert_eq!(
            root_from(&env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "")])),
            Some(PathBuf::from("/h/.cache/flexsn"))
        );
        // No per-user location: no disk cache, never the shared temporary folder.
        assert_eq!(root_from(&env(&[])), None);
    }

    #[test]
    fn entries_round_trip_and_corrupt_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.bin", b"payload");
        assert_eq!(read(d, "a.bin").as_deref(), Some(&b"payload"[..]));
        // Flip one byte, truncate, plant a foreign file: each is refused and removed.
        let good = std::fs::read(d.join("a.bin")).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for bad in [
            flipped,
            good[..good.len() - 1].to_vec(),
            b"\x7fELF".to_vec(),
        ] {
            std::fs::write(d.join("a.bin"), &bad).unwrap();
            assert_eq!(read(d, "a.bin"), None);
            assert!(!d.join("a.bin").exists());
        }
        // Only the entry is left behind by writes (no temporary files).
        write(d, "b.bin", b"x");
        let names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("b.bin")]);
    }

    #[cfg(unix)]
    #[test]
    fn cache_folders_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new/sub");
        private_dir(&fresh).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        // An existing folder of ours that others could write is made private first.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        // A file where the folder should be is refused.
        std::fs::write(dir.path().join("file"), b"").unwrap();
        assert!(private_dir(&dir.path().join("file")).is_none());
    }
}
