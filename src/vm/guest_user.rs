//! The unprivileged host user QEMU and passt run as when the agent is root.
//!
//! Owns: looking the user up, and creating it (a system account without home or shell) when the
//! agent is root and it does not exist yet. QEMU opens its files as root and then switches to
//! this user (`-runas`, or `-run-with user=` from QEMU 9.1 on); passt switches with `--runas`.
//! Whatever escapes the guest lands in a process that owns nothing, and every connection the
//! guest makes leaves the host as this user, which is what the egress rules match
//! ([`super::egress`]).

use std::process::Command;

/// Default name of the user (`vm.run_as` in config.yaml).
pub const DEFAULT_GUEST_USER: &str = "ghrunner-vm-guest";

/// A host user, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Errors of looking up or creating the user.
#[derive(Debug, thiserror::Error)]
pub enum GuestUserError {
    /// The user database could not be read.
    #[error("cannot look up user {name:?}")]
    Lookup {
        /// The user.
        name: String,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// The user does not exist and this process may not create it.
    #[error(
        "user {name:?} does not exist; create it with `useradd --system --no-create-home \
         --home-dir /nonexistent --shell /usr/sbin/nologin {name}`"
    )]
    Missing {
        /// The user.
        name: String,
    },
    /// `useradd` failed.
    #[error("`useradd` could not create user {name:?}: {detail}")]
    Create {
        /// The user.
        name: String,
        /// What useradd said.
        detail: String,
    },
    /// The user is root: nothing would be dropped.
    #[error("vm.run_as names {name:?}, which is root (uid 0): name an unprivileged user")]
    IsRoot {
        /// The user.
        name: String,
    },
}

impl GuestUser {
    /// The user `name`, if it exists.
    pub fn lookup(name: &str) -> Result<Option<GuestUser>, GuestUserError> {
        let user = nix::unistd::User::from_name(name).map_err(|source| GuestUserError::Lookup {
            name: name.to_owned(),
            source,
        })?;
        Ok(user.map(|u| GuestUser {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }))
    }

    /// The user `name`; created as a system account when it is missing and this process is
    /// root. Refuses root itself.
    pub fn ensure(name: &str) -> Result<GuestUser, GuestUserError> {
        let user = match Self::lookup(name)? {
            Some(user) => user,
            None if nix::unistd::geteuid().is_root() => {
                create(name)?;
                tracing::info!(
                    user = name,
                    "created the unprivileged user for QEMU and passt"
                );
                Self::lookup(name)?.ok_or_else(|| GuestUserError::Missing {
                    name: name.to_owned(),
                })?
            }
            None => {
                return Err(GuestUserError::Missing {
                    name: name.to_owned(),
                });
            }
        };
        if user.uid == 0 {
            return Err(GuestUserError::IsRoot {
                name: name.to_owned(),
            });
        }
        Ok(user)
    }

    /// `uid:gid`, as passt's `--runas` takes it.
    pub fn ids(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

fn create(name: &str) -> Result<(), GuestUserError> {
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ])
        .output()
        .map_err(|e| GuestUserError::Create {
            name: name.to_owned(),
            detail: e.to_string(),
        })?;
    // Exit code 9: created meanwhile by someone else (another agent): fine.
    if out.status.success() || out.status.code() == Some(9) {
        return Ok(());
    }
    Err(GuestUserError::Create {
        name: name.to_owned(),
        detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_and_unknown_users_are_none() {
        assert!(matches!(
            GuestUser::ensure("root"),
            Err(GuestUserError::IsRoot { .. })
        ));
        assert_eq!(
            GuestUser::lookup("no-such-user-ghrunner-vm-test").unwrap(),
            None
        );
        let root = GuestUser::lookup("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid, root.ids().as_str()), (0, 0, "0:0"));
    }
}
