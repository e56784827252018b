//! The host's last-level data cache, for sizing working sets that should stay in it.
//!
//! Read from Linux's sysfs (`/sys/devices/system/cpu/cpu0/cache`); elsewhere, or when it cannot
//! be read, a size typical of the machines this backend targets.

use std::path::Path;
use std::sync::OnceLock;

use crate::memory::parse_size;

/// Bytes of last-level cache per core when sysfs says nothing: a server core's share.
const FALLBACK_BYTES_PER_CORE: usize = 4 << 20;

/// Bytes of the largest data (or unified) cache level that one core can count on: its size
/// divided by the cores sharing it. Read once per process.
pub(crate) fn last_level_bytes_per_core() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        read_sysfs(Path::new("/sys/devices/system/cpu/cpu0/cache"))
            .unwrap_or(FALLBACK_BYTES_PER_CORE)
    })
}

/// The largest cache level under `dir` (`index*/level`, `type`, `size`, `shared_cpu_list`),
/// per sharing core.
fn read_sysfs(dir: &Path) -> Option<usize> {
    let mut best: Option<(u32, usize)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        if kind.trim() == "Instruction" {
            continue;
        }
        // sysfs writes sizes as "48K" or "32768K".
        let bytes = parse_size(&size).ok().and_then(|b| usize::try_from(b).ok());
        let (Ok(level), Some(bytes)) = (level.trim().parse::<u32>(), bytes) else {
            continue;
        };
        let sharing = read("shared_cpu_list")
            .map(|l| count_cpus(l.trim()))
            .unwrap_or(1)
            .max(1);
        if best.is_none_or(|(l, _)| level > l) {
            best = Some((level, bytes / sharing));
        }
    }
    best.map(|(_, b)| b).filter(|&b| b > 0)
}

/// CPUs in a list such as `"0-3,8,10-11"`.
fn count_cpus(list: &str) -> usize {
    list.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpu_lists_parse() {
        assert_eq!(parse_size("48K"), Ok(48 << 10));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("12Q").is_err());
        assert_eq!(count_cpus("0-1"), 2);
        assert_eq!(count_cpus("0-3,8,10-11"), 7);
        assert_eq!(count_cpus("5"), 1);
    }

    #[test]
    fn the_largest_level_is_shared_among_its_cores() {
        let dir = std::env::temp_dir().join(format!("flexsn-caches-{}", std::process::id()));
        let put = |index: &str, level: &str, kind: &str, size: &str, cpus: &str| {
            let d = dir.join(index);
            std::fs::create_dir_all(&d).unwrap();
            for (f, v) in [
                ("level", level),
                ("type", kind),
                ("size", size),
                ("shared_cpu_list", cpus),
            ] {
                std::fs::write(d.join(f), format!("{v}\n")).unwrap();
            }
        };
        put("index0", "1", "Data", "48K", "0");
        put("index1", "1", "Instruction", "32K", "0");
        put("index2", "2", "Unified", "1024K", "0");
        put("index3", "3", "Unified", "32768K", "0-3");
        assert_eq!(read_sysfs(&dir), Some(8 << 20));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_sysfs(&dir), None);
        assert!(last_level_bytes_per_core() > 0);
    }
}
