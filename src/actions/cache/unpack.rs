//! Unpacking one action tarball (gzip tar as GitHub's tarball endpoint and `git archive` make
//! it) into a directory, with the top-level folder (`owner-repo-sha7/`) stripped.
//!
//! Refused: more than one top-level folder (the official runner requires exactly one), absolute
//! paths, `..` components, symlinks whose target leaves the tree (judged lexically from the
//! link's own directory), hard links to paths outside the tree, device and FIFO entries, and
//! more than [`MAX_UNPACKED_BYTES`] of content. Files are never written through a symlink: the
//! parent directory of every entry must resolve inside the tree.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// Most bytes of file content one action may unpack to (bounds a decompression bomb).
pub const MAX_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is not a readable gzip tar.
    #[error("the archive is not a valid gzip tar")]
    Corrupt(#[source] io::Error),
    /// An entry's path is absolute or climbs out with `..`.
    #[error("the archive entry {path:?} is outside the action's folder")]
    UnsafePath {
        /// The entry's path as stored.
        path: String,
    },
    /// A link points outside the tree.
    #[error("the archive link {path:?} points outside the action's folder ({target:?})")]
    UnsafeLink {
        /// The link's path.
        path: String,
        /// Its target.
        target: String,
    },
    /// The archive does not hold exactly one top-level folder.
    #[error("the archive must hold exactly one top-level folder (found {found:?} and {other:?})")]
    TopLevel {
        /// The first top-level name.
        found: String,
        /// Another one.
        other: String,
    },
    /// An entry of a type actions never hold (device, FIFO, …).
    #[error("the archive entry {path:?} has an unsupported type")]
    UnsupportedEntry {
        /// The entry's path.
        path: String,
    },
    /// The content is larger than [`MAX_UNPACKED_BYTES`].
    #[error("the archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")]
    TooLarge,
    /// Writing the tree failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Unpacks the gzip tar `archive` into `dest` (created), stripping the top-level folder.
pub fn unpack_tarball(archive: &Path, dest: &Path) -> Result<(), UnpackError> {
    let file = fs::File::open(archive).map_err(UnpackError::Corrupt)?;
    unpack_reader(io::BufReader::new(file), dest)
}

/// Like [`unpack_tarball`], from any reader of gzip tar bytes.
pub fn unpack_reader<R: Read>(reader: R, dest: &Path) -> Result<(), UnpackError> {
    fs::create_dir_all(dest).map_err(|source| write_err(dest, source))?;
    let root = dest
        .canonicalize()
        .map_err(|source| write_err(dest, source))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut top: Option<String> = None;
    let mut total = 0u64;
    let mut hard_links = Vec::new();
    for entry in archive.entries().map_err(UnpackError::Corrupt)? {
        let mut entry = entry.map_err(UnpackError::Corrupt)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName
        ) {
            continue;
        }
        let raw = entry.path().map_err(UnpackError::Corrupt)?.into_owned();
        let shown = raw.to_string_lossy().into_owned();
        let Some((first, rest)) = split_top(&raw).ok_or_else(|| UnpackError::UnsafePath {
            path: shown.clone(),
        })?
        else {
            continue;
        };
        match &top {
            None => top = Some(first),
            Some(known) if *known != first => {
                return Err(UnpackError::TopLevel {
                    found: known.clone(),
                    other: first,
                });
            }
            Some(_) => {}
        }
        if rest.as_os_str().is_empty() {
            continue; // the top-level folder itself
        }
        let target = root.join(&rest);
        ensure_parent_inside(&root, &target)?;
        match kind {
            EntryType::Directory => {
                fs::create_dir_all(&target).map_err(|source| write_err(&target, source))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                total = total.saturating_add(entry.header().size().unwrap_or(0));
                if total > MAX_UNPACKED_BYTES {
                    return Err(UnpackError::TooLarge);
                }
                let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
                write_file(&mut entry, &target, exec)?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Corrupt)?
                    .unwrap_or_default()
                    .into_owned();
                if !link_stays_inside(&rest, &link) {
                    return Err(UnpackError::UnsafeLink {
                        path: shown,
                        target: link.to_string_lossy().into_owned(),
                    });
                }
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|source| write_err(&target, source))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Corrupt)?
                    .unwrap_or_default()
                    .into_owned();
                let inside = split_top(&link)
                    .flatten()
                    .filter(|(f, r)| Some(f) == top.as_ref() && !r.as_os_str().is_empty());
                let Some((_, source)) = inside else {
                    return Err(UnpackError::UnsafeLink {
                        path: shown,
                        target: link.to_string_lossy().into_owned(),
                    });
                };
                hard_links.push((root.join(source), target));
            }
            _ => return Err(UnpackError::UnsupportedEntry { path: shown }),
        }
    }
    // Hard links become copies once every regular file is in place.
    for (source, target) in hard_links {
        ensure_parent_inside(&root, &source)?;
        fs::copy(&source, &target).map_err(|e| write_err(&target, e))?;
    }
    check_links_resolve_inside(&root, &root)
}

/// A symlink that passes the lexical check can still leave the tree when the kernel follows a
/// link inside its target (`d -> .`, `e -> d/..`); refuse any link that resolves outside.
fn check_links_resolve_inside(root: &Path, dir: &Path) -> Result<(), UnpackError> {
    for entry in fs::read_dir(dir).map_err(|source| write_err(dir, source))? {
        let entry = entry.map_err(|source| write_err(dir, source))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|source| write_err(&path, source))?;
        if kind.is_symlink() {
            // A dangling link resolves nowhere; nothing writes through it.
            if let Ok(resolved) = path.canonicalize()
                && !resolved.starts_with(root)
            {
                let target = fs::read_link(&path).unwrap_or_default();
                return Err(UnpackError::UnsafeLink {
                    path: path
                        .strip_prefix(root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned(),
                    target: target.to_string_lossy().into_owned(),
                });
            }
        } else if kind.is_dir() {
            check_links_resolve_inside(root, &path)?;
        }
    }
    Ok(())
}

/// Splits `path` into its top-level name and the rest; `None` when it is absolute or has `..`
/// (or other non-normal components); `Some(None)` for an empty path.
fn split_top(path: &Path) -> Option<Option<(String, PathBuf)>> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let mut iter = parts.into_iter();
    let Some(first) = iter.next() else {
        return Some(None);
    };
    Some(Some((first.to_string_lossy().into_owned(), iter.collect())))
}

/// Whether the symlink at `link_path` (relative to the tree root) with target `target` stays
/// inside the tree, judged lexically.
fn link_stays_inside(link_path: &Path, target: &Path) -> bool {
    if target.has_root() || target.as_os_str().is_empty() {
        return false;
    }
    // Depth of the link's directory below the root.
    let mut depth = link_path.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Creates `target`'s parent and checks it resolves inside `root` (no write through a link).
fn ensure_parent_inside(root: &Path, target: &Path) -> Result<(), UnpackError> {
    let parent = target.parent().unwrap_or(root);
    fs::create_dir_all(parent).map_err(|source| write_err(parent, source))?;
    let resolved = parent
        .canonicalize()
        .map_err(|source| write_err(parent, source))?;
    if !resolved.starts_with(root) {
        return Err(UnpackError::UnsafePath {
            path: target.to_string_lossy().into_owned(),
        });
    }
    Ok(())
}

fn write_file<R: Read>(reader: &mut R, target: &Path, exec: bool) -> Result<(), UnpackError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mode = if exec { 0o755 } else { 0o644 };
    // create_new: never follow or overwrite an existing entry (a symlink planted earlier).
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(target)
        .map_err(|source| write_err(target, source))?;
    io::copy(reader, &mut file).map_err(|source| match source.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => UnpackError::Corrupt(source),
        _ => write_err(target, source),
    })?;
    Ok(())
}

fn write_err(path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Write {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(EntryType::Regular);
        header.set_cksum();
        b.append_data(&mut header, path, body).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(EntryType::Symlink);
        header.set_size(0);
        b.append_link(&mut header, path, target).unwrap();
    }

    #[test]
    fn strips_the_top_folder_and_keeps_inside_links() {
        let bytes = tarball(|b| {
            file(b, "o-r-abc/action.yml", b"name: x\n");
            file(b, "o-r-abc/dist/index.js", b"1");
            link(b, "o-r-abc/dist/alias.js", "index.js");
            link(b, "o-r-abc/dist/up", "../action.yml");
        });
        let dir = tempfile::tempdir().unwrap();
        unpack_reader(&bytes[..], dir.path()).unwrap();
        assert_eq!(
            fs::read(dir.path().join("action.yml")).unwrap(),
            b"name: x\n"
        );
        assert_eq!(fs::read(dir.path().join("dist/alias.js")).unwrap(), b"1");
        assert!(dir.path().join("dist/up").exists());
        assert!(!dir.path().join("o-r-abc").exists());
    }

    #[test]
    fn refuses_links_escaping_the_tree_and_two_top_folders() {
        let escaping = tarball(|b| link(b, "o-r-abc/evil", "../../etc/passwd"));
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_reader(&escaping[..], dir.path()).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafeLink { .. }), "{err}");
        let absolute = tarball(|b| link(b, "o-r-abc/evil", "/etc"));
        let err = unpack_reader(&absolute[..], tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafeLink { .. }), "{err}");
        let two = tarball(|b| {
            file(b, "a/x", b"1");
            file(b, "b/y", b"2");
        });
        let err = unpack_reader(&two[..], tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(matches!(err, UnpackError::TopLevel { .. }), "{err}");
    }

    #[test]
    fn refuses_dot_dot_paths_and_garbage() {
        // tar::Builder refuses `..` itself; write the name into the header by hand.
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"o/../../x.sh");
        header.set_size(1);
        header.set_entry_type(EntryType::Regular);
        header.set_cksum();
        let bytes = tarball(|b| b.append(&header, &b"1"[..]).unwrap());
        let err = unpack_reader(&bytes[..], tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
        let err = unpack_reader(&b"not gzip"[..], tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt(_)), "{err}");
    }

    #[test]
    fn a_file_is_never_written_through_a_link() {
        let bytes = tarball(|b| {
            link(b, "o-r-abc/d", ".");
            file(b, "o-r-abc/d/x", b"1");
        });
        let dir = tempfile::tempdir().unwrap();
        // `d` → `.` stays inside, so writing `d/x` lands in the root: allowed, and inside.
        unpack_reader(&bytes[..], dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"1");
        // `e` → `d/..` looks inside lexically but the kernel resolves it to the parent.
        let sneaky = tarball(|b| {
            link(b, "o-r-abc/d", ".");
            link(b, "o-r-abc/e", "d/..");
        });
        let err = unpack_reader(&sneaky[..], tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafeLink { .. }), "{err}");
    }
}
