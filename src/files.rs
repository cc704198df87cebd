//! Files written whole: a full disk or a kill mid-write leaves the old file (or none), never
//! a torn or empty one that the next run would trip over.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` through a hidden file beside it, renamed over `path` once whole.
/// An error names `path`.
pub fn write_whole(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let partial = partial_of(path);
    // The file it replaces keeps its permissions (a new one takes the umask's, as before).
    let keep = std::fs::metadata(path).ok().map(|m| m.permissions());
    let written = write_synced(&partial, bytes.as_ref())
        .and_then(|()| keep.map_or(Ok(()), |p| std::fs::set_permissions(&partial, p)))
        .and_then(|()| std::fs::rename(&partial, path))
        .and_then(|()| sync_folder_of(path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written.with_context(|| format!("{}: cannot write", path.display()))
}

/// The bytes on the disk before the rename makes them the file: after a power loss the name
/// holds the old contents or the new, not an empty file.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The folder entry of a renamed file on the disk too.
fn sync_folder_of(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

/// The partial file's name carries the process id, so two writers never share one.
fn partial_of(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Remove the partial files a killed writer left in `dir` (`.NAME.partial-PID`, with or
/// without an extension after the id) whose process is gone. A live writer's file stays, so
/// two runs over one folder do not pull files from under each other. Returns how many went.
pub fn remove_stale_partials(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let gone = partial_writer(&name).is_some_and(crate::engine::export::process_gone);
        if gone && entry.file_type().is_ok_and(|t| t.is_file()) {
            removed += usize::from(std::fs::remove_file(entry.path()).is_ok());
        }
    }
    removed
}

/// The writer's process id, as text, when `name` is a partial file's name.
fn partial_writer(name: &str) -> Option<&str> {
    let (_, tail) = name.strip_prefix('.')?.rsplit_once(".partial-")?;
    tail.split('.').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        write_whole(&path, "old").unwrap();
        write_whole(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        // The partial file cannot be made (its name is taken by a folder): the old file stays.
        std::fs::create_dir(partial_of(&path)).unwrap();
        std::fs::create_dir(partial_of(&path).join("x")).unwrap();
        let e = write_whole(&path, "newer").unwrap_err();
        assert!(
            format!("{e:#}").contains("sweep.json: cannot write"),
            "{e:#}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A file replaced keeps its permissions.
        std::fs::remove_dir_all(partial_of(&path)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_whole(&path, "newest").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_dead_writers_partial_files_go_and_a_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str| std::fs::write(dir.path().join(name), "x").unwrap();
        // No process has an id this large (Linux caps them at 2^22).
        let dead = 4_000_000_000u32;
        put(&format!(".model.safetensors.partial-{dead}"));
        put(&format!(".loss.partial-{dead}.png"));
        put(&format!(".timings.json.partial-{}", std::process::id()));
        put("model.safetensors");
        put(".partial-notes");
        assert_eq!(remove_stale_partials(dir.path()), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let own = format!(".timings.json.partial-{}", std::process::id());
        assert_eq!(left, [".partial-notes", own.as_str(), "model.safetensors"]);
        assert_eq!(remove_stale_partials(&dir.path().join("absent")), 0);
    }
}
