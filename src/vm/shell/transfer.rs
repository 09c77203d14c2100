//! Snippets that move files between host and guest through the command's stdin and stdout:
//! upload and (capped) download with `cat`/`head`, a batched write of directories and files,
//! and a batched read framed with a sentinel whose output is parsed here.

use super::{ShellError, check_nul, quote};
use crate::vm::GuestRead;

/// Renders a snippet that writes stdin to `path` with `mode`.
pub fn render_upload(path: &str, mode: u32) -> Result<String, ShellError> {
    check_nul(|| "the guest path".into(), path)?;
    let path = quote(path);
    Ok(format!("cat >{path} && chmod {:o} {path}\n", mode & 0o7777))
}

/// Renders a snippet that writes the file at `path` to stdout.
pub fn render_download(path: &str) -> Result<String, ShellError> {
    check_nul(|| "the guest path".into(), path)?;
    Ok(format!("exec cat {}\n", quote(path)))
}

/// Renders a snippet that writes at most `max_bytes + 1` bytes of the file at `path` to stdout
/// (one byte more than allowed tells the reader the file is too large).
pub fn render_download_capped(path: &str, max_bytes: u64) -> Result<String, ShellError> {
    check_nul(|| "the guest path".into(), path)?;
    Ok(format!(
        "exec head -c {} {}\n",
        max_bytes.saturating_add(1),
        quote(path)
    ))
}

/// Renders a snippet that creates `dirs` (with parents), creates every file of `empty` empty,
/// writes stdin to `from_stdin` (if any) and sets each file's mode; it stops at the first
/// failure. One round trip instead of one per directory set and file.
pub fn render_write_batch(
    dirs: &[&str],
    empty: &[(&str, u32)],
    from_stdin: Option<(&str, u32)>,
) -> Result<String, ShellError> {
    let mut script = String::from("set -e\n");
    if !dirs.is_empty() {
        script.push_str("mkdir -p");
        for dir in dirs {
            check_nul(|| "a guest directory".into(), dir)?;
            script.push(' ');
            script.push_str(&quote(dir));
        }
        script.push('\n');
    }
    let mut modes: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for (path, mode) in empty.iter().chain(from_stdin.as_ref()) {
        check_nul(|| "a guest path".into(), path)?;
        modes.entry(mode & 0o7777).or_default().push(quote(path));
    }
    for (path, _) in empty {
        script.push_str(&format!(": >{}\n", quote(path)));
    }
    if let Some((path, _)) = from_stdin {
        script.push_str(&format!("cat >{}\n", quote(path)));
    }
    for (mode, paths) in modes {
        script.push_str(&format!("chmod {mode:o} {}\n", paths.join(" ")));
    }
    Ok(script)
}

/// Renders a snippet that prints each of `paths` framed for [`parse_read_batch`]: a header line
/// (`-` for a missing or unreadable file, `+<size>` for one larger than `max_bytes`, which is
/// not sent, else its size), the bytes, then `sentinel` on its own line. The size is taken in
/// the guest before anything is read, so a huge (or sparse) file costs the host nothing; at most
/// that many bytes are sent even if the file grows meanwhile. Empty files cost no process.
pub fn render_read_batch(
    paths: &[&str],
    sentinel: &str,
    max_bytes: u64,
) -> Result<String, ShellError> {
    let mut words = Vec::with_capacity(paths.len());
    for path in paths {
        check_nul(|| "a guest path".into(), path)?;
        words.push(quote(path));
    }
    Ok(format!(
        "for f in {}; do\n\
         if [ -f \"$f\" ] && [ -r \"$f\" ]; then\n\
         s=$(wc -c <\"$f\" | tr -d ' ') || exit 1\n\
         if [ \"$s\" -gt {max_bytes} ]; then echo \"+$s\"\n\
         elif [ \"$s\" -gt 0 ]; then echo \"$s\" && head -c \"$s\" \"$f\" || exit 1\n\
         else echo 0; fi\n\
         else echo -; fi\n\
         echo {}\n\
         done\n",
        words.join(" "),
        quote(sentinel)
    ))
}

/// The most bytes [`render_read_batch`] output may have for `count` files of at most
/// `max_bytes` each (headers and sentinels included).
pub fn read_batch_limit(count: usize, max_bytes: u64, sentinel: &str) -> usize {
    let per_file = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    count.saturating_mul(per_file.saturating_add(sentinel.len() + 32))
}

/// Why the output of [`render_read_batch`] could not be split (a file changed while it was
/// read, or the output was cut short).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the batched read of {files} files returned malformed output")]
pub struct ReadBatchError {
    /// How many files were asked for.
    pub files: usize,
}

/// Splits the output of [`render_read_batch`] into `count` files; a file claiming more than
/// `max_bytes` (a guest that does not follow the snippet) makes the output malformed.
pub fn parse_read_batch(
    output: &[u8],
    count: usize,
    sentinel: &str,
    max_bytes: u64,
) -> Result<Vec<GuestRead>, ReadBatchError> {
    let bad = || ReadBatchError { files: count };
    let mut rest = output;
    let mut files = Vec::with_capacity(count);
    let mut terminator = sentinel.as_bytes().to_vec();
    terminator.push(b'\n');
    for _ in 0..count {
        let newline = rest.iter().position(|b| *b == b'\n').ok_or_else(bad)?;
        let header = std::str::from_utf8(&rest[..newline])
            .map_err(|_| bad())?
            .trim();
        rest = &rest[newline + 1..];
        let contents = if header == "-" {
            GuestRead::Missing
        } else if let Some(size) = header.strip_prefix('+') {
            let size: u64 = size.parse().map_err(|_| bad())?;
            if size <= max_bytes {
                return Err(bad());
            }
            GuestRead::TooLarge { size }
        } else {
            let size: u64 = header.parse().map_err(|_| bad())?;
            if size > max_bytes {
                return Err(bad());
            }
            let size = usize::try_from(size).map_err(|_| bad())?;
            let bytes = rest.get(..size).ok_or_else(bad)?;
            rest = &rest[size..];
            GuestRead::Contents(bytes.to_vec())
        };
        rest = rest.strip_prefix(terminator.as_slice()).ok_or_else(bad)?;
        files.push(contents);
    }
    if rest.is_empty() {
        Ok(files)
    } else {
        Err(bad())
    }
}
