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

/// Prepares `command` to die with this process and to live in its own process group.
#[allow(unsafe_code)]
fn tie_to_this_process(command: &mut Command) {
    command.process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(io::Error::from)?;
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
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
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
