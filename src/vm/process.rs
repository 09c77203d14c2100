//! Host helper processes of a VM (QEMU, passt, qemu-img) that never outlive the agent.
//!
//! Each helper is started in its own process group (a Ctrl-C in the agent's terminal reaches the
//! agent, which then stops its jobs in order, not the VMs directly) with the parent-death
//! signal set to SIGKILL, so that a killed agent (`kill -9`, OOM) takes its VMs with it at once:
//! a VM must not keep running with the job's network and tokens. Linux sends the parent-death
//! signal when the *thread* that forked the child exits, so every helper is forked by one
//! dedicated thread that lives as long as the process ([`spawn`]).
//!
//! ```text
//!  caller ──Command──► spawner thread ──fork──► child: setpgid(0,0); prctl(PDEATHSIG, SIGKILL);
//!     ▲                                                 parent already gone? exit
//!     └────────────── Child ◄──────────────────────── exec
//! ```
//!
//! A helper that drops its own privileges (QEMU's `-runas`, passt's `--runas`) loses the
//! parent-death signal: Linux clears it when a process changes its user or group ids. Such
//! helpers run under a guard ([`guarded_command`]): a `/bin/sh` that stays root, gets SIGTERM
//! as its parent-death signal, runs the helper in its process group and waits; on SIGTERM
//! (agent gone), SIGHUP or SIGINT it kills the whole group. Every helper is killed by group
//! ([`kill_group`]), so the guard and its helper always go together.
//!
//! ```text
//!  agent ─► sh (root, pgid = own pid, PDEATHSIG=TERM, trap TERM/HUP/INT: kill -KILL 0)
//!             └─► qemu … -runas ghrunner-vm-guest   (same group; exits → sh exits with its code)
//! ```

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type Reply = mpsc::Sender<io::Result<Child>>;

/// The spawner thread's queue.
static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Command, Reply)>>> = OnceLock::new();

fn spawner() -> &'static Mutex<mpsc::Sender<(Command, Reply)>> {
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, Reply)>();
        std::thread::Builder::new()
            .name("ghrunner-vm-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the helper-process spawner thread starts");
        Mutex::new(tx)
    })
}

/// The guard's script (`$@` is the helper's argv). A signal that arrives while `wait` blocks
/// interrupts it and runs the trap; `kill -KILL 0` needs no pid, so a signal arriving before
/// `$!` is known still takes the helper along. The helper gets the guard's standard input (a
/// background command's would be /dev/null), and the guard keeps no copy of it.
const GUARD_SCRIPT: &str = "trap 'kill -KILL 0' TERM HUP INT; exec 3<&0 </dev/null; \
                            \"$@\" <&3 3<&- & exec 3<&-; wait $!; exit $?";

/// `$0` of the guard shell (what `ps` shows for it).
pub const GUARD_NAME: &str = "ghrunner-vm-guard";

/// A command that runs `program` under a guard shell (see the module docs); add the program's
/// arguments, stdio and environment to it as usual and start it with [`spawn`]. Use it for
/// helpers that change their user id.
pub fn guarded_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", GUARD_SCRIPT, GUARD_NAME]).arg(program);
    command
}

/// Sends SIGKILL to `pid` (a child not yet reaped, so the pid is still ours) and to its process
/// group (a helper started by [`spawn`] leads its own: the helper and its guard). Errors (the
/// process or group is gone, or `pid` leads no group) are ignored.
pub fn kill_group(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Prepares `command` to die with this process and to live in its own process group. A guard
/// shell gets SIGTERM (it traps it and kills its group); anything else SIGKILL.
#[allow(unsafe_code)]
fn tie_to_this_process(command: &mut Command) {
    let signal = if command.get_args().nth(2) == Some(std::ffi::OsStr::new(GUARD_NAME))
        && command.get_program() == "/bin/sh"
    {
        nix::sys::signal::Signal::SIGTERM
    } else {
        nix::sys::signal::Signal::SIGKILL
    };
    command.process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal).map_err(io::Error::from)?;
            // The agent died between the fork and the prctl: the signal will never come.
            if nix::unistd::getppid().as_raw() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Starts `command` so that it dies with this process (SIGKILL when the agent dies, whatever
/// way) in a process group of its own. The fork happens on the spawner thread; this call
/// blocks for the fork and exec only.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    tie_to_this_process(&mut command);
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("the helper-process spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the helper-process spawner thread is gone"))?
}

/// Runs `command` to its end like [`Command::output`], started by [`spawn`]; the process is
/// killed if the returned future is dropped before it ended.
pub async fn output(mut command: Command) -> io::Result<Output> {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = spawn(command)?;
    let guard = KillOnDrop(Some(child.id()));
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output()).await;
    guard.disarm();
    waited.map_err(io::Error::other)?
}

/// Kills a process on drop unless disarmed.
struct KillOnDrop(Option<u32>);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_group(pid);
        }
    }
}

/// The children of process `pid`, from `/proc` (its `children` file, or a scan of every
/// process's parent when the kernel lacks that file).
pub fn children_of(pid: u32) -> Vec<u32> {
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The helper a guard started by [`guarded_command`] runs (its only child), once it exists;
/// `None` if none appeared within `patience` (the guard exited, or forks very slowly).
pub async fn guarded_helper(guard: u32, patience: std::time::Duration) -> Option<u32> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        if let Some(pid) = children_of(guard).first() {
            return Some(*pid);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Running or sleeping.
    Alive,
    /// Stopped (SIGSTOP) or traced: it makes no progress.
    Stopped,
    /// Exited (a zombie) or gone.
    Gone,
}

/// The state of process `pid`.
pub fn state(pid: u32) -> ProcessState {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return ProcessState::Gone;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    match state {
        Some("T") | Some("t") => ProcessState::Stopped,
        Some("Z") | Some("X") | Some("x") | None => ProcessState::Gone,
        Some(_) => ProcessState::Alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_get_their_own_process_group_and_report_their_state() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut child = spawn(command).expect("sleep starts");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert_eq!(
            nix::unistd::getpgid(Some(pid)).unwrap(),
            pid,
            "its own group"
        );
        assert_eq!(state(child.id()), ProcessState::Alive);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let mut stopped = false;
        for _ in 0..100 {
            if state(child.id()) == ProcessState::Stopped {
                stopped = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(stopped, "a SIGSTOPped process reads as stopped");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(state(child.id()), ProcessState::Gone);
    }

    /// Live members of process group `pgid`, from /proc.
    fn group_members(pgid: u32) -> Vec<u32> {
        let mut members = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z" {
                members.push(pid);
            }
        }
        members
    }

    #[test]
    fn a_guarded_helper_passes_its_exit_code_and_dies_with_its_group() {
        let mut command = guarded_command("sh");
        command.args(["-c", "exit 7"]);
        let mut child = spawn(command).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(7), "the helper's code");

        // The helper reads the guard's standard input.
        let mut command = guarded_command("sh");
        command
            .args(["-c", "read line; echo got:$line"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = spawn(command).unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "got:hello\n");

        let mut command = guarded_command("sleep");
        command.arg("300");
        let mut child = spawn(command).unwrap();
        let pgid = child.id();
        let mut members = Vec::new();
        for _ in 0..200 {
            members = group_members(pgid);
            if members.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(members.len(), 2, "the guard and sleep: {members:?}");
        let helper = children_of(pgid);
        assert_eq!(helper.len(), 1);
        assert!(members.contains(&helper[0]));
        // What the parent-death signal delivers to the guard: the whole group goes.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pgid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let _ = child.wait();
        for _ in 0..200 {
            if group_members(pgid).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            group_members(pgid),
            Vec::<u32>::new(),
            "sleep died with its guard"
        );
    }

    #[tokio::test]
    async fn output_runs_to_the_end() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = output(command).await.unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }
}
