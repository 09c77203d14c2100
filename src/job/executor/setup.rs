//! Building an executor from what is on disk: [`ExecutorConfig::from_settings`] maps
//! `<dir>/config.yaml` and a [`RunnerIdentity`] onto the executor's settings (a registration's
//! `.runner` gives the identity through [`RunnerIdentity::of_registration`]; a run without a
//! registration names its own), and [`ServiceReports`] starts the GitHub reporter of a job
//! (results service when the job names one, the legacy VSS timeline otherwise).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{ExecutorConfig, ImageCatalog, JobReport, ReportFactory, VmDefaults, VmJobExecutor};
use crate::client::HttpClient;
use crate::config::RunnerSettings;
use crate::config::settings::{Network, Settings};
use crate::job::budget::VmBudget;
use crate::job::hooks::Hooks;
use crate::job::lifecycle::BoxError;
use crate::job::report::{ReportOptions, ReportTarget, Reporter};
use crate::metrics::Metrics;
use crate::protocol::job::AgentJobRequestMessage;
use crate::vm::{Hypervisor, NetworkPolicy};

pub use crate::job::report::RESULTS_ENDPOINT_VARIABLE;

/// Who the executor runs jobs as: the runner's name and the labels its image is chosen by.
/// A registration provides both ([`RunnerIdentity::of_registration`]); a run without one
/// (`exec`) names itself and takes the labels from the job's `runs-on`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerIdentity {
    /// The runner's name (`runner.name`, "Runner name" in the job log, the reporter's worker).
    pub name: String,
    /// Labels; they pick the VM image ([`super::select_image`]).
    pub labels: Vec<String>,
}

impl RunnerIdentity {
    /// The identity of a registration: its `.runner` name and labels.
    pub fn of_registration(runner: &RunnerSettings) -> Self {
        RunnerIdentity {
            name: runner.agent_name.clone(),
            labels: runner.labels.clone(),
        }
    }
}

impl ExecutorConfig {
    /// The executor settings for `runner`: `root` is the runner directory (relative image
    /// paths are resolved against it). Hooks not set in the file come from
    /// `ACTIONS_RUNNER_HOOK_JOB_STARTED` / `_COMPLETED`.
    pub fn from_settings(root: &Path, settings: &Settings, runner: RunnerIdentity) -> Self {
        let resolve = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                root.join(p)
            }
        };
        ExecutorConfig {
            runner,
            catalog: ImageCatalog {
                images: settings
                    .images
                    .iter()
                    .map(|(label, dir)| (label.clone(), resolve(dir)))
                    .collect(),
                default_image: settings.default_image.clone(),
                config_path: Settings::path(root),
            },
            vm: VmDefaults {
                cpus: settings.vm.cpus,
                memory_mib: u32::try_from(settings.vm.memory_mib).unwrap_or(u32::MAX),
                network: match settings.vm.network {
                    Network::User => NetworkPolicy::User,
                    Network::None => NetworkPolicy::None,
                },
                boot_timeout: Duration::from_secs(settings.vm.boot_timeout_secs),
            },
            hooks: Hooks::resolve(
                settings.hooks.job_started.as_ref().map(resolve),
                settings.hooks.job_completed.as_ref().map(resolve),
                |name| std::env::var(name).ok(),
            ),
            console_dir: None,
        }
    }
}

/// What every registration served by one `run` process shares: the settings, the hypervisor,
/// the host's VM budget, the metrics and the HTTP client of the reporters.
pub struct HostRuntime<H: Hypervisor> {
    /// The runner directory.
    pub root: PathBuf,
    /// `<root>/config.yaml`.
    pub settings: Settings,
    /// The VM backend.
    pub hypervisor: Arc<H>,
    /// The host's VM budget (`limits:`).
    pub budget: VmBudget,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Reporter factory.
    pub reports: ServiceReports,
}

impl<H: Hypervisor> HostRuntime<H> {
    /// A runtime whose budget comes from `settings.limits` (0 = derive from this host); the
    /// reporters send through `http` (bind it to the version policy so that they advertise the
    /// current runner version).
    pub fn new(root: PathBuf, settings: Settings, hypervisor: Arc<H>, http: HttpClient) -> Self {
        let budget = VmBudget::from_limits(
            settings.limits.max_vm_cpus,
            settings.limits.max_vm_memory_mib,
        );
        HostRuntime {
            root,
            settings,
            hypervisor,
            budget,
            metrics: Arc::new(Metrics::default()),
            reports: ServiceReports::new(http, ReportOptions::default()),
        }
    }

    /// The executor of one registration (`.runner`), sharing the budget and metrics.
    pub fn executor(&self, runner: &RunnerSettings) -> VmJobExecutor<H, ServiceReports> {
        let identity = RunnerIdentity::of_registration(runner);
        let config = ExecutorConfig::from_settings(&self.root, &self.settings, identity);
        VmJobExecutor::new(Arc::clone(&self.hypervisor), self.reports.clone(), config)
            .with_budget(self.budget.clone())
            .with_metrics(Arc::clone(&self.metrics))
    }
}

/// Starts GitHub reporters for jobs.
#[derive(Debug, Clone)]
pub struct ServiceReports {
    http: HttpClient,
    options: ReportOptions,
}

/// Why a job's reporter could not be set up (the message lacks what reporting needs).
pub type ReportSetupError = crate::job::report::TargetError;

impl ServiceReports {
    /// Reporters sending through `http`, the runner's shared client.
    pub fn new(http: HttpClient, options: ReportOptions) -> Self {
        ServiceReports { http, options }
    }
}

impl ReportFactory for ServiceReports {
    fn start(
        &self,
        message: &AgentJobRequestMessage,
        runner_name: &str,
    ) -> Result<JobReport, BoxError> {
        let target = report_target(message, runner_name)?;
        let reporter = if target.results_url.is_some() {
            Reporter::results(target, self.http.clone(), self.options)?
        } else {
            Reporter::legacy(target, self.http.clone(), self.options)
        };
        Ok(reporter.into())
    }
}

/// Where to report a job, from its message (see [`ReportTarget::from_message`]).
pub fn report_target(
    message: &AgentJobRequestMessage,
    worker_name: &str,
) -> Result<ReportTarget, ReportSetupError> {
    ReportTarget::from_message(message, worker_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::{Hooks as HookSettings, VmSettings};

    #[test]
    fn settings_map_onto_the_executor_config() {
        let settings = Settings {
            images: [("tiny".to_owned(), PathBuf::from("images/tiny"))].into(),
            default_image: Some("tiny".into()),
            vm: VmSettings {
                cpus: 3,
                memory_mib: 512,
                network: Network::None,
                boot_timeout_secs: 30,
                ..VmSettings::default()
            },
            hooks: HookSettings {
                job_started: Some(PathBuf::from("/hooks/start.sh")),
                job_completed: None,
            },
            ..Settings::default()
        };
        let runner = RunnerSettings {
            agent_name: "vm-2".into(),
            labels: vec!["self-hosted".into(), "tiny".into()],
            ..RunnerSettings::default()
        };
        let identity = RunnerIdentity::of_registration(&runner);
        assert_eq!(identity.name, "vm-2");
        assert_eq!(identity.labels, runner.labels);
        let config = ExecutorConfig::from_settings(Path::new("/r"), &settings, identity.clone());
        assert_eq!(config.runner, identity);
        // Without a registration (`exec`): the same settings, an identity of its own.
        let local = RunnerIdentity {
            name: "exec".into(),
            labels: vec!["ubuntu-latest".into()],
        };
        let config = ExecutorConfig::from_settings(Path::new("/r"), &settings, local.clone());
        assert_eq!(config.runner, local);
        assert_eq!(config.vm.cpus, 3);
        assert_eq!(
            config.catalog.images["tiny"],
            PathBuf::from("/r/images/tiny")
        );
        assert_eq!(config.catalog.config_path, PathBuf::from("/r/config.yaml"));
        assert_eq!(config.vm.cpus, 3);
        assert_eq!(config.vm.memory_mib, 512);
        assert_eq!(config.vm.network, NetworkPolicy::None);
        assert_eq!(config.vm.boot_timeout, Duration::from_secs(30));
        assert_eq!(
            config.hooks.job_started,
            Some(PathBuf::from("/hooks/start.sh"))
        );
    }

    fn message(extra_vars: serde_json::Value) -> AgentJobRequestMessage {
        serde_json::from_value(serde_json::json!({
            "plan": {"planId": uuid::Uuid::new_v4(), "planType": "actions",
                     "scopeIdentifier": uuid::Uuid::new_v4()},
            "timeline": {"id": uuid::Uuid::new_v4()},
            "jobId": uuid::Uuid::new_v4(), "jobDisplayName": "build",
            "resources": {"endpoints": [{"name": "SystemVssConnection",
                "url": "http://127.0.0.1:9/tenant",
                "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": "tok"}}}]},
            "variables": extra_vars,
        }))
        .unwrap()
    }

    #[test]
    fn the_target_comes_from_the_message_and_picks_the_path() {
        let legacy = report_target(&message(serde_json::json!({})), "vm-1").unwrap();
        assert_eq!(legacy.server_url.as_str(), "http://127.0.0.1:9/tenant/");
        assert_eq!(legacy.access_token, "tok");
        assert_eq!(legacy.worker_name, "vm-1");
        assert!(legacy.results_url.is_none());
        let results = report_target(
            &message(serde_json::json!({
                RESULTS_ENDPOINT_VARIABLE: {"value": "http://127.0.0.1:9/results"}
            })),
            "vm-1",
        )
        .unwrap();
        assert_eq!(
            results.results_url.map(|u| u.to_string()),
            Some("http://127.0.0.1:9/results/".to_owned())
        );
    }
}
