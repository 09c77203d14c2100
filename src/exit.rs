//! Process exit codes, decided in one place.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | an error (the message says what and how to fix it) |
//! | 2 | bad command-line usage (clap) |
//! | 3 | the registration is gone on the server: register again |
//! | 5 | session conflict: another process holds this runner's session (as the official runner) |
//! | 7 | every registration's runner version is refused by the service and no newer one is known (as the official runner with `ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1`) |

use std::process::ExitCode;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success,
    /// An error was reported to the user.
    Error,
    /// The command line was wrong.
    Usage,
    /// The runner registration no longer exists on the server.
    RegistrationGone,
    /// Another process holds this runner's session.
    SessionConflict,
    /// The service refuses the advertised runner version.
    VersionRejected,
}

impl ExitStatus {
    /// The numeric code documented in the module docs.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Error => 1,
            ExitStatus::Usage => 2,
            ExitStatus::RegistrationGone => 3,
            ExitStatus::SessionConflict => 5,
            ExitStatus::VersionRejected => 7,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}
