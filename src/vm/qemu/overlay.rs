//! The job's copy-on-write disk: a qcow2 overlay on the image's template, made by `qemu-img`.
//!
//! Owns: running `qemu-img create -f qcow2 -b <abs template> -F qcow2 <overlay> [size]`.
//! Does not own: removing the overlay (it lives in the VM's directory, removed with it).

use std::path::Path;

use std::process::Command;

use crate::vm::VmError;

/// The `qemu-img` argv (without the program) creating `overlay` on `template`.
pub fn overlay_args(
    template: &Path,
    overlay: &Path,
    size_gib: Option<u32>,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-b".into(),
        template.into(),
        "-F".into(),
        "qcow2".into(),
        overlay.into(),
    ];
    if let Some(gib) = size_gib {
        args.push(format!("{gib}G").into());
    }
    args
}

/// Creates `overlay` backed by `template` (made absolute, as qcow2 resolves relative backing
/// paths against the overlay's directory).
pub async fn create_overlay(
    qemu_img: &Path,
    template: &Path,
    overlay: &Path,
    size_gib: Option<u32>,
) -> Result<(), VmError> {
    let template = std::path::absolute(template).map_err(|source| VmError::Io {
        action: "resolving the template disk",
        path: template.to_owned(),
        source,
    })?;
    let mut command = Command::new(qemu_img);
    command.args(overlay_args(&template, overlay, size_gib));
    let output = crate::vm::process::output(command)
        .await
        .map_err(|source| VmError::Spawn {
            program: qemu_img.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(VmError::Command {
            program: qemu_img.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    tracing::debug!(overlay = %overlay.display(), template = %template.display(), "overlay created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_names_backing_format_and_optional_size() {
        let args = overlay_args(
            Path::new("/img/disk.qcow2"),
            Path::new("/vm/disk.qcow2"),
            Some(20),
        );
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                "/img/disk.qcow2",
                "-F",
                "qcow2",
                "/vm/disk.qcow2",
                "20G"
            ]
        );
        let args = overlay_args(Path::new("/t"), Path::new("/o"), None);
        assert_eq!(args.last().unwrap(), "/o");
    }
}
