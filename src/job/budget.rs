//! The host's VM budget: how many virtual CPUs and MiB of guest memory all running VMs may use
//! together (`limits.max_vm_cpus` / `limits.max_vm_memory_mib`; 0 derives the limit from the
//! host). Every job takes a [`BudgetGrant`] before its VM is launched and gives it back when the
//! grant is dropped, so N registrations run up to N jobs at once, within the budget.
//!
//! ```text
//!  acquire(cpus, mem) ──fits──► granted (held by the job) ──drop──► released, waiters woken
//!        │ does not fit now: wait (FIFO per resource, cancellable)
//!        │ can never fit: BudgetError::TooLarge (the job fails with a message)
//! ```
//!
//! CPUs are taken before memory, always in that order, so two jobs never wait on each other.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Share of the host's memory the VMs may use when `max_vm_memory_mib` is 0.
pub const DEFAULT_MEMORY_PERCENT: u64 = 75;

/// A VM asked for more than the whole budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The request exceeds the host limit; it could never be granted.
    #[error(
        "the VM needs {cpus} CPUs and {memory_mib} MiB but the host budget is {max_cpus} CPUs and \
         {max_memory_mib} MiB; lower vm.cpus / vm.memory_mib or raise limits.max_vm_cpus / \
         limits.max_vm_memory_mib in config.yaml"
    )]
    TooLarge {
        /// CPUs asked for.
        cpus: u32,
        /// Memory asked for.
        memory_mib: u64,
        /// The CPU budget.
        max_cpus: u32,
        /// The memory budget.
        max_memory_mib: u64,
    },
}

/// The shared budget (cheap to clone).
#[derive(Debug, Clone)]
pub struct VmBudget {
    cpus: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    max_cpus: u32,
    max_memory_mib: u64,
}

/// Resources held by one job's VM; released on drop.
#[derive(Debug)]
pub struct BudgetGrant {
    _cpus: OwnedSemaphorePermit,
    _memory: OwnedSemaphorePermit,
}

/// The effective limits: configured values, or the host's cores and
/// [`DEFAULT_MEMORY_PERCENT`] of its memory for 0.
pub fn effective_limits(
    max_cpus: u32,
    max_memory_mib: u64,
    host_cores: u32,
    host_memory_mib: u64,
) -> (u32, u64) {
    let cpus = if max_cpus == 0 {
        host_cores.max(1)
    } else {
        max_cpus
    };
    let memory = if max_memory_mib == 0 {
        (host_memory_mib * DEFAULT_MEMORY_PERCENT / 100).max(1)
    } else {
        max_memory_mib
    };
    (cpus, memory)
}

/// The host's logical cores.
pub fn host_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// The host's total memory in MiB (from `/proc/meminfo`; 0 if unknown).
pub fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_total_mib(&text))
        .unwrap_or(0)
}

/// `MemTotal` of a `/proc/meminfo` text, in MiB.
pub fn parse_mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

impl VmBudget {
    /// A budget of `max_cpus` CPUs and `max_memory_mib` MiB (both already effective, > 0).
    pub fn new(max_cpus: u32, max_memory_mib: u64) -> Self {
        let permits = |n: u64| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS)
        };
        VmBudget {
            cpus: Arc::new(Semaphore::new(permits(u64::from(max_cpus)))),
            memory: Arc::new(Semaphore::new(permits(max_memory_mib))),
            max_cpus,
            max_memory_mib,
        }
    }

    /// The budget from configured limits (0 = derive from this host).
    pub fn from_limits(max_cpus: u32, max_memory_mib: u64) -> Self {
        let (cpus, memory) =
            effective_limits(max_cpus, max_memory_mib, host_cores(), host_memory_mib());
        VmBudget::new(cpus, memory)
    }

    /// The CPU and memory limits.
    pub fn limits(&self) -> (u32, u64) {
        (self.max_cpus, self.max_memory_mib)
    }

    /// Takes `cpus` and `memory_mib` if they are free right now (and within the limits).
    pub fn try_acquire(&self, cpus: u32, memory_mib: u64) -> Option<BudgetGrant> {
        if cpus > self.max_cpus || memory_mib > self.max_memory_mib {
            return None;
        }
        let memory_permits = u32::try_from(memory_mib).ok()?;
        let cpus = Arc::clone(&self.cpus).try_acquire_many_owned(cpus).ok()?;
        let memory = Arc::clone(&self.memory)
            .try_acquire_many_owned(memory_permits)
            .ok()?;
        Some(BudgetGrant {
            _cpus: cpus,
            _memory: memory,
        })
    }

    /// Waits until `cpus` and `memory_mib` are free and takes them. Cancel by dropping the
    /// future (nothing is held then).
    pub async fn acquire(&self, cpus: u32, memory_mib: u64) -> Result<BudgetGrant, BudgetError> {
        if cpus > self.max_cpus || memory_mib > self.max_memory_mib {
            return Err(BudgetError::TooLarge {
                cpus,
                memory_mib,
                max_cpus: self.max_cpus,
                max_memory_mib: self.max_memory_mib,
            });
        }
        // Both fit the semaphores' u32 range: they are at most the limits, which were
        // created from them.
        let memory_permits = u32::try_from(memory_mib).unwrap_or(u32::MAX);
        let cpus = Arc::clone(&self.cpus).acquire_many_owned(cpus).await;
        let memory = Arc::clone(&self.memory)
            .acquire_many_owned(memory_permits)
            .await;
        match (cpus, memory) {
            (Ok(cpus), Ok(memory)) => Ok(BudgetGrant {
                _cpus: cpus,
                _memory: memory,
            }),
            // The semaphores are never closed.
            _ => unreachable!("VM budget semaphores are never closed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn zero_limits_derive_from_the_host() {
        assert_eq!(effective_limits(0, 0, 8, 16384), (8, 12288));
        assert_eq!(effective_limits(3, 1000, 8, 16384), (3, 1000));
        assert_eq!(effective_limits(0, 0, 0, 0), (1, 1));
    }

    #[test]
    fn meminfo_total_is_parsed_in_mib() {
        let text = "MemTotal:       24576000 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total_mib(text), Some(24000));
        assert_eq!(parse_mem_total_mib("MemFree: 1 kB"), None);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_fails_at_once() {
        let budget = VmBudget::new(4, 4096);
        let err = budget.acquire(8, 1024).await.unwrap_err();
        assert!(err.to_string().contains("limits.max_vm_cpus"), "{err}");
        assert!(budget.acquire(2, 8192).await.is_err());
    }

    #[test]
    fn try_acquire_takes_only_what_is_free_now() {
        let budget = VmBudget::new(2, 1024);
        assert!(budget.try_acquire(4, 512).is_none(), "over the limit");
        let first = budget.try_acquire(2, 512).expect("free");
        assert!(budget.try_acquire(1, 256).is_none(), "CPUs used up");
        drop(first);
        let second = budget.try_acquire(1, 1024).expect("released on drop");
        assert!(budget.try_acquire(1, 1).is_none(), "memory used up");
        drop(second);
    }

    #[tokio::test]
    async fn grants_wait_for_the_budget_and_are_released_on_drop() {
        let budget = VmBudget::new(4, 4096);
        let first = budget.acquire(2, 2048).await.unwrap();
        let second = budget.acquire(2, 2048).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.acquire(1, 512).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a third VM must wait while the budget is used up"
        );
        drop(first);
        waiting.await.unwrap().unwrap();
        drop(second);
        let all = budget.acquire(4, 4096).await;
        assert!(all.is_ok());
    }
}
