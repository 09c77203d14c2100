//! Acting on one polled message: decrypt and decode it, then start a job (legacy or run
//! service: acknowledge, acquire), cancel one, follow a broker migration, drop the token,
//! note a newer runner version, or stop; legacy messages are deleted afterwards unless a job
//! request is left for redelivery.

use super::handover::NextJob;
use super::jobref::ReceivedJob;
use super::jobs::{self, LegacyChannel, RunServiceChannel};
use super::running::Jobs;
use super::session::{self, Session};
use super::{Listener, Source};
use crate::client::backoff::ErrorThrottle;
use crate::client::broker::ServiceError;
use crate::errors::ErrorChain;
use crate::job::lifecycle::JobExecutor;
use crate::protocol::message::{
    BrokerErrorKind, ListenerMessage, RunnerJobRequestRef, TaskAgentMessage,
};

/// What the loop does after a message.
pub(super) enum Flow {
    Continue,
    Stop,
    /// The service refused the advertised version (acknowledge or acquire).
    VersionRejected(ServiceError),
}

/// Where a decoded message came from (decides which broker a job request is acknowledged on).
#[derive(Debug, Clone, Copy)]
enum MessageFrom<'a> {
    /// This session's own poll.
    Session,
    /// The broker named by a `BrokerMigration`, polled with this (legacy) session's id.
    Migration { broker_url: &'a str },
}

impl<E: JobExecutor> Listener<E> {
    /// Decrypts, decodes and acts on one message; deletes legacy messages afterwards (unless
    /// the message is left for redelivery).
    pub(super) async fn dispatch(
        &self,
        session: &Session,
        source: Source,
        message: TaskAgentMessage,
        jobs: &mut Jobs,
        accepting: bool,
        throttle: &mut ErrorThrottle,
    ) -> Flow {
        let message_id = message.message_id;
        let message_type = message.message_type.clone();
        tracing::debug!(message_id, message_type, "message received");
        let (flow, delete) = match session.open(&message) {
            Ok(decoded) => {
                let from = MessageFrom::Session;
                self.act(session, from, decoded, jobs, accepting, throttle)
                    .await
            }
            Err(err) => {
                tracing::warn!(message_id, message_type, error = %err, cause = ?std::error::Error::source(&err), "undecodable message skipped");
                (Flow::Continue, true)
            }
        };
        if delete && source == Source::Legacy {
            let timeout = self.cfg.timings.timeouts.short_call;
            if let Err(err) = self
                .legacy
                .delete_message(session.id(), message_id, timeout)
                .await
            {
                tracing::warn!(message_id, error = %err, "cannot delete message");
            }
        }
        flow
    }

    /// Acts on a decoded message; returns the flow and whether to delete the message.
    /// `accepting` is false during shutdown: a job request is then left for redelivery.
    async fn act(
        &self,
        session: &Session,
        from: MessageFrom<'_>,
        message: ListenerMessage,
        jobs: &mut Jobs,
        accepting: bool,
        throttle: &mut ErrorThrottle,
    ) -> (Flow, bool) {
        let is_job = matches!(
            message,
            ListenerMessage::PipelineAgentJobRequest(_) | ListenerMessage::RunnerJobRequest(_)
        );
        if is_job && let Some(why) = self.not_taking_jobs(jobs, accepting) {
            tracing::info!(
                reason = why,
                "job request left for redelivery (not deleted, not acknowledged)"
            );
            return (Flow::Continue, false);
        }
        match message {
            ListenerMessage::PipelineAgentJobRequest(job) => {
                self.start_legacy_job(job, jobs);
                (Flow::Continue, true)
            }
            ListenerMessage::RunnerJobRequest(job) => {
                let flow = self
                    .start_broker_job(session, from, &job, jobs, throttle)
                    .await;
                (flow, true)
            }
            ListenerMessage::JobCancellation(cancel) => {
                let target = jobs
                    .running
                    .iter()
                    .find(|r| r.job_id.eq_ignore_ascii_case(&cancel.job_id));
                match target {
                    Some(r) => {
                        tracing::info!(job_id = %cancel.job_id, "job cancellation requested");
                        r.cancel.cancel();
                    }
                    None => {
                        tracing::info!(job_id = %cancel.job_id, "cancellation for a job not running here, ignored")
                    }
                }
                (Flow::Continue, true)
            }
            ListenerMessage::BrokerMigration(migration) => {
                let url = migration.broker_base_url;
                tracing::debug!(broker = %url, "broker migration, polling the broker");
                match self.poll_broker(&url, session.id(), jobs.status()).await {
                    Ok(Some(message)) => match session.open(&message) {
                        Ok(decoded) => {
                            let from = MessageFrom::Migration { broker_url: &url };
                            let acted = Box::pin(
                                self.act(session, from, decoded, jobs, accepting, throttle),
                            );
                            (acted.await.0, false)
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "undecodable broker message skipped");
                            (Flow::Continue, false)
                        }
                    },
                    Ok(None) => (Flow::Continue, false),
                    Err(err) => {
                        tracing::warn!(error = %err, "broker poll after migration failed");
                        (Flow::Continue, false)
                    }
                }
            }
            ListenerMessage::ForceTokenRefresh => {
                tracing::info!("token refresh requested");
                self.tokens.invalidate();
                (Flow::Continue, true)
            }
            ListenerMessage::AgentRefresh(refresh) => {
                self.cfg.versions.offer_target(&refresh.target_version);
                (Flow::Continue, true)
            }
            ListenerMessage::RunnerRefresh(refresh) => {
                self.cfg.versions.offer_target(&refresh.target_version);
                (Flow::Continue, true)
            }
            ListenerMessage::RunnerShutdown(shutdown) => {
                tracing::info!(reason = %shutdown.reason, "service asked the runner to shut down");
                (Flow::Stop, false)
            }
            ListenerMessage::Unknown { message_type } => {
                tracing::warn!(message_type, "unknown message type ignored");
                (Flow::Continue, true)
            }
        }
    }

    /// Why a job request cannot be taken now, if it cannot: the process is shutting down, or
    /// a `--once` runner already has its job (the official runner skips deletion likewise).
    fn not_taking_jobs(&self, jobs: &Jobs, accepting: bool) -> Option<&'static str> {
        if !accepting {
            Some("the runner is shutting down")
        } else if self.cfg.once && jobs.taken {
            Some("this one-job (--once or ephemeral) runner already has its job")
        } else {
            None
        }
    }

    /// Types the delivered job message and starts the job (a message without usable ids is
    /// skipped: it cannot be renewed or completed).
    fn start_legacy_job(&self, job: serde_json::Value, jobs: &mut Jobs) {
        match ReceivedJob::from_delivered(&job) {
            Ok(received) => {
                let channel = LegacyChannel::new(
                    self.http.clone(),
                    self.legacy.clone(),
                    received.job_ref.clone(),
                    self.cfg.timings.clone(),
                );
                let next = NextJob::Legacy(self.legacy.clone());
                self.spawn_job(channel, received, next, jobs);
            }
            Err(err) => {
                tracing::error!(error = %err, invalid = %ErrorChain(&err.invalid), "job message unusable, skipped")
            }
        }
    }

    /// Acknowledges (best effort), acquires and dispatches a run-service job. The acknowledge
    /// goes to the broker the reference came from: the session's broker, or after a
    /// `BrokerMigration` the broker the migration named (as the official runner's
    /// `_brokerServer` connection follows the migration).
    async fn start_broker_job(
        &self,
        session: &Session,
        from: MessageFrom<'_>,
        job: &RunnerJobRequestRef,
        jobs: &mut Jobs,
        throttle: &mut ErrorThrottle,
    ) -> Flow {
        let timings = &self.cfg.timings;
        // A refused version on the acknowledge does not lose the job (the official runner
        // acquires after any acknowledge failure); the session is renewed afterwards.
        let mut version_refused = None;
        if job.should_acknowledge {
            let url = match from {
                MessageFrom::Migration { broker_url } => Some(broker_url.to_owned()),
                MessageFrom::Session => session
                    .broker_url()
                    .map(str::to_owned)
                    .or_else(|| self.cfg.broker_url.clone()),
            };
            match url {
                Some(url) => {
                    let ack = self
                        .broker(&url)
                        .acknowledge(
                            session.id(),
                            &job.runner_request_id,
                            jobs.status(),
                            &self.identity(),
                            timings.timeouts.acknowledge,
                        )
                        .await;
                    match ack {
                        Ok(()) => {
                            tracing::debug!(request = %job.runner_request_id, "job request acknowledged")
                        }
                        Err(err)
                            if self.cfg.ephemeral
                                && err.kind() == Some(BrokerErrorKind::AcknowledgeJobNotFound) =>
                        {
                            // actions/runner #4540: an ephemeral runner whose job is gone exits.
                            tracing::info!(error = %err, "the job is gone on the broker; this ephemeral runner stops");
                            return Flow::Stop;
                        }
                        Err(err)
                            if session::classify(&err) == session::Failure::VersionRejected =>
                        {
                            tracing::warn!(error = %err, "acknowledge refused the runner version; acquiring the job anyway");
                            version_refused = Some(err);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "acknowledge failed (best effort), acquiring the job anyway")
                        }
                    }
                }
                None => tracing::warn!(
                    request = %job.runner_request_id,
                    "the job request asks for an acknowledge but no broker URL is known; acquiring it without"
                ),
            }
        }
        // The image is known from the registration: boot the VM while the job is acquired.
        self.executor.prepare(&job.id);
        let message = match jobs::acquire(&self.http, &self.tokens, job, throttle, timings).await {
            Ok(message) => message,
            Err(failure) => {
                self.executor.discard_prepared();
                return match failure {
                    Some(err) if session::classify(&err) == session::Failure::VersionRejected => {
                        Flow::VersionRejected(err)
                    }
                    _ => Flow::Continue,
                };
            }
        };
        match ReceivedJob::from_delivered(&message) {
            Ok(mut received) => {
                let job_ref = &mut received.job_ref;
                if job_ref.billing_owner_id.is_none() {
                    job_ref.billing_owner_id = job.billing_owner_id.clone();
                }
                let channel =
                    RunServiceChannel::new(self.http.clone(), job_ref.clone(), timings.clone());
                self.spawn_job(channel, received, NextJob::RunService, jobs);
            }
            Err(err) => {
                tracing::error!(error = %err, invalid = %ErrorChain(&err.invalid), "acquired job message unusable, skipped");
                self.executor.discard_prepared();
            }
        }
        version_refused.map_or(Flow::Continue, Flow::VersionRejected)
    }
}
