//! The QEMU command line, as a pure function of a [`LaunchPlan`].
//!
//! Owns: every flag QEMU is started with (machine, accelerator, CPUs and memory, direct kernel
//! boot, the overlay disk, the serial console file, QMP, networking, pid file, sandboxing).
//! Does not own: deciding the accelerator or the network backend (see `accel.rs`, `net.rs`).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// Guest port of the SSH server (guest contract).
pub const GUEST_SSH_PORT: u16 = 22;

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// How the guest's NIC is backed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetBackend {
    /// QEMU's built-in slirp with `restrict=on`: the guest reaches nothing; only the SSH port
    /// forward from `127.0.0.1:host_port` exists.
    SlirpRestricted {
        /// Host loopback port forwarded to guest port 22.
        host_port: u16,
    },
    /// A passt process on the other end of a socket pair that is QEMU's standard input
    /// (QEMU 7.2 `-netdev stream` with `addr.type=fd`).
    Passt,
}

/// Everything the command line depends on.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    /// VM name (shown in `ps` through `-name`).
    pub name: String,
    /// Accelerator.
    pub accel: Accel,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Kernel for direct boot.
    pub kernel: PathBuf,
    /// Initial ramdisk, if any.
    pub initrd: Option<PathBuf>,
    /// Complete kernel command line.
    pub append: String,
    /// The job's qcow2 overlay, if the image has a disk.
    pub overlay: Option<PathBuf>,
    /// File receiving the serial console.
    pub console: PathBuf,
    /// QMP socket.
    pub qmp_socket: PathBuf,
    /// Pid file written by QEMU.
    pub pidfile: PathBuf,
    /// Network backend.
    pub net: NetBackend,
    /// The unprivileged user QEMU switches to once its files are open, if any.
    pub run_as: Option<RunAs>,
}

/// QEMU's switch to an unprivileged user after start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user name.
    pub user: String,
    /// `-run-with user=` (QEMU 9.1 and later) instead of the older `-runas`.
    pub run_with: bool,
}

impl RunAs {
    /// The flag for `user` on QEMU `version` (major, minor); unknown versions get `-runas`.
    pub fn for_version(user: &str, version: Option<(u32, u32)>) -> RunAs {
        RunAs {
            user: user.to_owned(),
            run_with: version.is_some_and(|v| v >= (9, 1)),
        }
    }
}

/// Id of the serial console's chardev (its backend is swapped once the guest is ready).
pub const CONSOLE_CHARDEV: &str = "console";

/// Builds the kernel command line: the image's own, then the console and the SSH key.
pub fn kernel_cmdline(image_cmdline: Option<&str>, ssh_key_param: &str) -> String {
    let mut parts: Vec<&str> = image_cmdline
        .map(|c| c.split_whitespace().collect())
        .unwrap_or_default();
    // `panic=-1` with `-no-reboot` turns a guest panic into a prompt QEMU exit.
    // `no_timer_check`: under TCG on a loaded host the kernel's IO-APIC timer check can miss its
    // window and panic ("IO-APIC + timer doesn't work"); a virtual timer needs no such check.
    parts.extend(["console=ttyS0", "panic=-1", "no_timer_check", ssh_key_param]);
    parts.join(" ")
}

/// Escapes a value for QEMU's option syntax (commas are doubled).
fn opt(value: impl Into<OsString>) -> String {
    value.into().to_string_lossy().replace(',', ",,")
}

/// Builds QEMU's argv (without the program name).
pub fn build_args(plan: &LaunchPlan) -> Vec<OsString> {
    let mut args: Vec<String> = vec![
        "-name".into(),
        format!(
            "{},process=ghrunner-vm-{}",
            opt(&plan.name),
            opt(&plan.name)
        ),
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        plan.accel.to_string(),
        "-cpu".into(),
        match plan.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
        .into(),
        "-smp".into(),
        plan.cpus.max(1).to_string(),
        "-m".into(),
        format!("{}M", plan.memory_mib),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        // Seccomp: QEMU may not spawn programs, change privileges or use obsolete syscalls.
        // With a user to switch to, QEMU's own setuid must pass the filter; after it, no
        // capability is left to elevate with.
        "-sandbox".into(),
        format!(
            "on,obsolete=deny,elevateprivileges={},spawn=deny,resourcecontrol=deny",
            if plan.run_as.is_some() {
                "allow"
            } else {
                "deny"
            }
        ),
        "-kernel".into(),
        opt(&plan.kernel),
        "-append".into(),
        plan.append.clone(),
    ];
    if let Some(initrd) = &plan.initrd {
        args.extend(["-initrd".into(), opt(initrd)]);
    }
    match &plan.run_as {
        Some(RunAs {
            user,
            run_with: true,
        }) => args.extend(["-run-with".into(), format!("user={}", opt(user))]),
        Some(RunAs {
            user,
            run_with: false,
        }) => args.extend(["-runas".into(), user.clone()]),
        None => {}
    }
    if let Some(overlay) = &plan.overlay {
        args.extend([
            "-drive".into(),
            // The overlay is thrown away with the VM: no host flushes needed.
            format!(
                "file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
                opt(overlay)
            ),
        ]);
    }
    args.extend([
        "-chardev".into(),
        format!(
            "file,id={CONSOLE_CHARDEV},path={},append=on",
            opt(&plan.console)
        ),
        "-serial".into(),
        format!("chardev:{CONSOLE_CHARDEV}"),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", opt(&plan.qmp_socket)),
        "-pidfile".into(),
        opt(&plan.pidfile),
    ]);
    let netdev = match &plan.net {
        NetBackend::SlirpRestricted { host_port } => {
            format!("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_SSH_PORT}")
        }
        NetBackend::Passt => "stream,id=net0,server=off,addr.type=fd,addr.str=0".to_owned(),
    };
    // `romfile=` skips the iPXE option ROM: no network boot, faster start.
    args.extend([
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=net0,romfile=".into(),
    ]);
    args.into_iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LaunchPlan {
        LaunchPlan {
            name: "job-1".into(),
            accel: Accel::Tcg,
            cpus: 2,
            memory_mib: 1024,
            kernel: "/img/vmlinuz".into(),
            initrd: Some("/img/initrd.img".into()),
            append: kernel_cmdline(Some("quiet  rw"), "ghrunner.ssh_key=QUJD"),
            overlay: Some("/run/vms/job-1/disk.qcow2".into()),
            console: "/run/vms/job-1/console.log".into(),
            qmp_socket: "/run/vms/job-1/qmp.sock".into(),
            pidfile: "/run/vms/job-1/qemu.pid".into(),
            net: NetBackend::SlirpRestricted { host_port: 40022 },
            run_as: None,
        }
    }

    #[test]
    fn run_as_picks_the_flag_of_the_qemu_version_and_relaxes_only_setuid() {
        let mut p = plan();
        let args = strings(build_args(&p));
        assert!(!args.iter().any(|a| a == "-runas" || a == "-run-with"));
        assert!(value_of(&args, "-sandbox").contains("elevateprivileges=deny"));
        p.run_as = Some(RunAs::for_version("ghrunner-vm-guest", Some((7, 2))));
        let args = strings(build_args(&p));
        assert_eq!(value_of(&args, "-runas"), "ghrunner-vm-guest");
        assert_eq!(
            value_of(&args, "-sandbox"),
            "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"
        );
        p.run_as = Some(RunAs::for_version("ghrunner-vm-guest", Some((10, 0))));
        let args = strings(build_args(&p));
        assert_eq!(value_of(&args, "-run-with"), "user=ghrunner-vm-guest");
        assert!(!args.iter().any(|a| a == "-runas"));
        assert!(!RunAs::for_version("u", None).run_with);
        assert!(RunAs::for_version("u", Some((9, 1))).run_with);
        assert!(!RunAs::for_version("u", Some((9, 0))).run_with);
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    /// The value following `flag` (asserting the flag occurs exactly once).
    fn value_of<'a>(args: &'a [String], flag: &str) -> &'a str {
        let positions: Vec<_> = args
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == flag)
            .collect();
        assert_eq!(positions.len(), 1, "{flag} in {args:?}");
        &args[positions[0].0 + 1]
    }

    #[test]
    fn cmdline_appends_console_and_key_after_the_image_cmdline() {
        assert_eq!(
            kernel_cmdline(Some(" quiet  rw "), "ghrunner.ssh_key=QUJD"),
            "quiet rw console=ttyS0 panic=-1 no_timer_check ghrunner.ssh_key=QUJD"
        );
        assert_eq!(
            kernel_cmdline(None, "k=v"),
            "console=ttyS0 panic=-1 no_timer_check k=v"
        );
    }

    #[test]
    fn tcg_plan_renders_the_expected_flags() {
        let args = strings(build_args(&plan()));
        for flag in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        assert_eq!(value_of(&args, "-machine"), "q35");
        assert_eq!(value_of(&args, "-accel"), "tcg");
        assert_eq!(value_of(&args, "-cpu"), "max");
        assert_eq!(value_of(&args, "-smp"), "2");
        assert_eq!(value_of(&args, "-m"), "1024M");
        assert_eq!(value_of(&args, "-kernel"), "/img/vmlinuz");
        assert_eq!(value_of(&args, "-initrd"), "/img/initrd.img");
        assert_eq!(
            value_of(&args, "-append"),
            "quiet rw console=ttyS0 panic=-1 no_timer_check ghrunner.ssh_key=QUJD"
        );
        assert_eq!(
            value_of(&args, "-drive"),
            "file=/run/vms/job-1/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap"
        );
        assert_eq!(
            value_of(&args, "-qmp"),
            "unix:/run/vms/job-1/qmp.sock,server=on,wait=off"
        );
        assert_eq!(
            value_of(&args, "-chardev"),
            "file,id=console,path=/run/vms/job-1/console.log,append=on"
        );
        assert_eq!(value_of(&args, "-serial"), "chardev:console");
        assert_eq!(value_of(&args, "-pidfile"), "/run/vms/job-1/qemu.pid");
        assert_eq!(
            value_of(&args, "-netdev"),
            "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
        );
        assert_eq!(
            value_of(&args, "-device"),
            "virtio-net-pci,netdev=net0,romfile="
        );
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_diskless_images_get_no_drive() {
        let mut p = plan();
        p.accel = Accel::Kvm;
        p.overlay = None;
        p.initrd = None;
        let args = strings(build_args(&p));
        assert_eq!(value_of(&args, "-accel"), "kvm");
        assert_eq!(value_of(&args, "-cpu"), "host");
        assert!(!args.iter().any(|a| a == "-drive" || a == "-initrd"));
    }

    #[test]
    fn passt_backend_uses_a_stream_netdev_and_commas_in_paths_are_escaped() {
        let mut p = plan();
        p.net = NetBackend::Passt;
        p.qmp_socket = "/run/a,b/qmp.sock".into();
        let args = strings(build_args(&p));
        assert_eq!(
            value_of(&args, "-netdev"),
            "stream,id=net0,server=off,addr.type=fd,addr.str=0"
        );
        assert_eq!(
            value_of(&args, "-qmp"),
            "unix:/run/a,,b/qmp.sock,server=on,wait=off"
        );
    }
}
