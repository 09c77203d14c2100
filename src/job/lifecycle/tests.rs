//! Unit tests of the job lifecycle with a scripted channel and fake executors.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

/// A channel whose renew answers follow a script (then succeed), recording every call.
#[derive(Default)]
struct ScriptedChannel {
    renew_script: Mutex<VecDeque<Result<(), &'static str>>>,
    renews: Mutex<u32>,
    completed: Mutex<Vec<TaskResult>>,
    complete_failures: Mutex<u32>,
}

impl ScriptedChannel {
    fn with_renews(script: &[Result<(), &'static str>]) -> Arc<ScriptedChannel> {
        Arc::new(ScriptedChannel {
            renew_script: Mutex::new(script.iter().cloned().collect()),
            ..Default::default()
        })
    }
    fn renews(&self) -> u32 {
        *self.renews.lock().unwrap()
    }
    fn completed(&self) -> Vec<TaskResult> {
        self.completed.lock().unwrap().clone()
    }
}

fn err(kind: &'static str) -> ChannelError {
    let source: BoxError = kind.into();
    match kind {
        "gone" => ChannelError::Gone { source },
        "fatal" => ChannelError::Fatal { source },
        _ => ChannelError::Transient { source },
    }
}

impl JobChannel for ScriptedChannel {
    async fn renew(&self) -> Result<Option<DateTime<Utc>>, ChannelError> {
        *self.renews.lock().unwrap() += 1;
        let next = self.renew_script.lock().unwrap().pop_front();
        match next {
            Some(Err(kind)) => Err(err(kind)),
            _ => Ok(Some(Utc::now() + chrono::Duration::seconds(600))),
        }
    }
    async fn complete(&self, outcome: &JobOutcome) -> Result<(), ChannelError> {
        let mut failures = self.complete_failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(err("transient"));
        }
        self.completed.lock().unwrap().push(outcome.result);
        Ok(())
    }
}

/// Sleeps `work`, or stops early (with `Canceled`) when cancelled unless `stubborn`.
struct FakeExecutor {
    work: Duration,
    stubborn: bool,
    saw_cancel: Mutex<bool>,
}

impl FakeExecutor {
    fn new(work: Duration) -> FakeExecutor {
        FakeExecutor {
            work,
            stubborn: false,
            saw_cancel: Mutex::new(false),
        }
    }
}

impl JobExecutor for FakeExecutor {
    async fn execute(
        &self,
        message: AgentJobRequestMessage,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        assert_eq!(message.job_id, JOB_ID);
        tokio::select! {
            _ = tokio::time::sleep(self.work) => {}
            _ = cancel.cancelled(), if !self.stubborn => {
                *self.saw_cancel.lock().unwrap() = true;
                return Ok(JobOutcome::with_result(TaskResult::Canceled));
            }
        }
        let mut outcome = JobOutcome::with_result(TaskResult::Succeeded);
        outcome.outputs.insert(
            "answer".into(),
            VariableValue {
                value: "42".into(),
                is_secret: false,
            },
        );
        Ok(outcome)
    }
}

fn control() -> JobControl {
    JobControl {
        cancel: CancellationToken::new(),
        kill_after: Duration::from_secs(5),
    }
}

const JOB_ID: uuid::Uuid = uuid::Uuid::from_u128(0x11);

fn message() -> AgentJobRequestMessage {
    AgentJobRequestMessage::from_delivered(&serde_json::json!({
        "jobId": JOB_ID, "plan": {"planId": uuid::Uuid::from_u128(0x12)},
        "timeline": {"id": uuid::Uuid::from_u128(0x13)}, "steps": [],
        "resources": {"endpoints": [{"name": "SystemVssConnection", "url": "http://svc/",
            "authorization": {"parameters": {"AccessToken": "tok"}}}]}
    }))
    .expect("a valid message")
}

#[tokio::test]
async fn job_renews_while_running_and_completes_with_the_result() {
    let channel = ScriptedChannel::with_renews(&[]);
    let exec = FakeExecutor::new(Duration::from_millis(1500));
    let t = Timings::fast();
    let result = run_job(channel.clone(), &exec, message(), control(), &t).await;
    assert_eq!(result, TaskResult::Succeeded);
    // First renewal plus at least one heartbeat at 600 ms.
    assert!(channel.renews() >= 2, "renews: {}", channel.renews());
    assert_eq!(channel.completed(), [TaskResult::Succeeded]);
}

#[tokio::test]
async fn transient_renew_failures_are_tolerated() {
    let channel = ScriptedChannel::with_renews(&[
        Err("transient"),
        Ok(()),
        Err("transient"),
        Err("transient"),
    ]);
    let exec = FakeExecutor::new(Duration::from_millis(2000));
    let result = run_job(
        channel.clone(),
        &exec,
        message(),
        control(),
        &Timings::fast(),
    )
    .await;
    assert_eq!(result, TaskResult::Succeeded);
    assert!(channel.renews() >= 4);
}

#[tokio::test]
async fn first_renew_failing_abandons_the_job_without_running_it() {
    let channel = ScriptedChannel::with_renews(&[Err("transient"); 5]);
    let exec = FakeExecutor::new(Duration::from_secs(60));
    let result = run_job(
        channel.clone(),
        &exec,
        message(),
        control(),
        &Timings::fast(),
    )
    .await;
    assert_eq!(result, TaskResult::Abandoned);
    assert_eq!(channel.renews(), 5);
    assert_eq!(channel.completed(), [TaskResult::Abandoned]);
}

#[tokio::test]
async fn lock_lost_cancels_the_executor_and_abandons() {
    let channel = ScriptedChannel::with_renews(&[Ok(()), Err("gone")]);
    let exec = FakeExecutor::new(Duration::from_secs(60));
    let result = run_job(
        channel.clone(),
        &exec,
        message(),
        control(),
        &Timings::fast(),
    )
    .await;
    assert_eq!(result, TaskResult::Abandoned);
    assert!(*exec.saw_cancel.lock().unwrap());
    assert_eq!(channel.completed(), [TaskResult::Abandoned]);
}

#[tokio::test]
async fn cancellation_reaches_the_executor_and_completes_canceled() {
    let channel = ScriptedChannel::with_renews(&[]);
    let exec = FakeExecutor::new(Duration::from_secs(60));
    let ctl = control();
    let cancel = ctl.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let result = run_job(channel.clone(), &exec, message(), ctl, &Timings::fast()).await;
    assert_eq!(result, TaskResult::Canceled);
    assert!(*exec.saw_cancel.lock().unwrap());
    assert_eq!(channel.completed(), [TaskResult::Canceled]);
}

#[tokio::test]
async fn a_stubborn_executor_is_dropped_after_kill_after() {
    let channel = ScriptedChannel::with_renews(&[]);
    let mut exec = FakeExecutor::new(Duration::from_secs(600));
    exec.stubborn = true;
    let ctl = JobControl {
        cancel: CancellationToken::new(),
        kill_after: Duration::from_millis(200),
    };
    ctl.cancel.cancel();
    let result = run_job(channel.clone(), &exec, message(), ctl, &Timings::fast()).await;
    assert_eq!(result, TaskResult::Canceled);
    assert_eq!(channel.completed(), [TaskResult::Canceled]);
}

#[tokio::test]
async fn completion_is_retried() {
    let channel = ScriptedChannel::with_renews(&[]);
    *channel.complete_failures.lock().unwrap() = 3;
    let exec = FakeExecutor::new(Duration::from_millis(10));
    let result = run_job(
        channel.clone(),
        &exec,
        message(),
        control(),
        &Timings::fast(),
    )
    .await;
    assert_eq!(result, TaskResult::Succeeded);
    assert_eq!(channel.completed(), [TaskResult::Succeeded]);
}

#[test]
fn timespans_and_kill_after() {
    assert_eq!(parse_timespan("00:05:00"), Some(Duration::from_secs(300)));
    assert_eq!(
        parse_timespan("1.02:00:01"),
        Some(Duration::from_secs(93601))
    );
    assert_eq!(
        parse_timespan("00:00:01.5"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(parse_timespan("5 minutes"), None);
    assert_eq!(parse_timespan("00:61:00"), None);
    assert_eq!(
        kill_after(Some(Duration::from_secs(300))),
        Duration::from_secs(285)
    );
    assert_eq!(
        kill_after(Some(Duration::from_secs(10))),
        Duration::from_secs(45)
    );
    assert_eq!(kill_after(None), Duration::from_secs(45));
}

/// An executor that panics after a while.
struct PanickingExecutor;

impl JobExecutor for PanickingExecutor {
    async fn execute(
        &self,
        _message: AgentJobRequestMessage,
        _cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        tokio::time::sleep(Duration::from_millis(700)).await;
        panic!("the executor hit a bug");
    }
}

#[tokio::test]
async fn a_panicking_executor_completes_the_job_failed_and_stops_the_heartbeat() {
    let channel = ScriptedChannel::with_renews(&[]);
    let result = run_job(
        channel.clone(),
        &PanickingExecutor,
        message(),
        control(),
        &Timings::fast(),
    )
    .await;
    assert_eq!(result, TaskResult::Failed);
    assert_eq!(channel.completed(), [TaskResult::Failed]);
    let renews = channel.renews();
    // Fast timings renew every 600 ms: a heartbeat left running would renew again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(channel.renews(), renews, "no heartbeat without a job");
}

#[tokio::test]
async fn dropping_the_job_future_stops_the_heartbeat() {
    let channel = ScriptedChannel::with_renews(&[]);
    let exec = FakeExecutor::new(Duration::from_secs(60));
    let t = Timings::fast();
    let job = run_job(channel.clone(), &exec, message(), control(), &t);
    // The job task is dropped mid-job (its task aborted).
    let _ = tokio::time::timeout(Duration::from_millis(1500), job).await;
    let renews = channel.renews();
    assert!(renews >= 2, "the heartbeat ran: {renews}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        channel.renews(),
        renews,
        "the heartbeat stopped with the job"
    );
}

#[tokio::test]
async fn an_unusable_message_is_renewed_then_completed_failed_without_a_heartbeat() {
    let channel = ScriptedChannel::with_renews(&[Err("transient")]);
    let why = std::io::Error::other("the job message has no `steps`");
    let result = fail_unusable_job(channel.clone(), &why, control(), &Timings::fast()).await;
    assert_eq!(result, TaskResult::Failed);
    assert_eq!(channel.renews(), 2, "the first renewal, retried once");
    assert_eq!(channel.completed(), [TaskResult::Failed]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        channel.renews(),
        2,
        "no heartbeat for a job that does not run"
    );

    // A cancellation that came first wins, as for a job that runs; a lost lock abandons it.
    let channel = ScriptedChannel::with_renews(&[]);
    let ctl = control();
    ctl.cancel.cancel();
    let result = fail_unusable_job(channel.clone(), &why, ctl, &Timings::fast()).await;
    assert_eq!(result, TaskResult::Canceled);
    assert_eq!(channel.completed(), [TaskResult::Canceled]);
    let channel = ScriptedChannel::with_renews(&[Err("gone")]);
    let result = fail_unusable_job(channel.clone(), &why, control(), &Timings::fast()).await;
    assert_eq!(result, TaskResult::Abandoned);
    assert_eq!(channel.completed(), [TaskResult::Abandoned]);
}

/// A server that refuses a completion's body while it carries any annotation or step result
/// (as a 413 would), recording every body it was sent.
#[derive(Default)]
struct PickyChannel {
    refuse_step_results: bool,
    refuse_everything: bool,
    sent: Mutex<Vec<JobOutcome>>,
}

impl JobChannel for PickyChannel {
    async fn renew(&self) -> Result<Option<DateTime<Utc>>, ChannelError> {
        Ok(None)
    }
    async fn complete(&self, outcome: &JobOutcome) -> Result<(), ChannelError> {
        self.sent.lock().unwrap().push(outcome.clone());
        let too_big = self.refuse_everything
            || !outcome.annotations.is_empty()
            || outcome
                .step_results
                .iter()
                .any(|s| !s.annotations.is_empty())
            || (self.refuse_step_results && !outcome.step_results.is_empty());
        if too_big {
            return Err(ChannelError::Rejected {
                source: "413 Payload Too Large".into(),
            });
        }
        Ok(())
    }
}

fn rich_outcome() -> JobOutcome {
    let annotation: CompletionAnnotation = serde_json::from_value(serde_json::json!({
        "level": "warning", "message": "w", "isInfrastructureIssue": false
    }))
    .unwrap();
    let step: StepResult = serde_json::from_value(serde_json::json!({
        "external_id": uuid::Uuid::nil(), "number": 1, "name": "s", "status": "completed",
        "conclusion": "succeeded", "completed_log_lines": 3
    }))
    .unwrap();
    let mut outcome = JobOutcome::with_result(TaskResult::Failed);
    outcome.annotations = vec![annotation.clone(); 10];
    outcome.step_results = vec![StepResult {
        annotations: vec![annotation; 10],
        ..step
    }];
    outcome.outputs.insert(
        "o".into(),
        serde_json::from_value(serde_json::json!({"value": "v"})).unwrap(),
    );
    outcome
}

#[tokio::test]
async fn a_refused_completion_is_sent_again_without_its_annotations() {
    let channel = PickyChannel::default();
    complete(&channel, &rich_outcome(), &Timings::fast()).await;
    let sent = channel.sent.lock().unwrap();
    assert_eq!(sent.len(), 2, "the full body, then one without annotations");
    let last = sent.last().unwrap();
    assert_eq!(last.result, TaskResult::Failed);
    assert!(last.annotations.is_empty());
    assert_eq!(last.step_results.len(), 1, "step results are kept");
    assert!(last.step_results[0].annotations.is_empty());
    assert_eq!(last.step_results[0].completed_log_lines, 3);
    assert_eq!(last.outputs.len(), 1, "outputs are kept");
}

#[tokio::test]
async fn reductions_go_on_until_the_server_takes_the_result() {
    let channel = PickyChannel {
        refuse_step_results: true,
        ..Default::default()
    };
    complete(&channel, &rich_outcome(), &Timings::fast()).await;
    {
        let sent = channel.sent.lock().unwrap();
        assert_eq!(sent.len(), 3);
        assert!(sent[2].step_results.is_empty() && sent[2].annotations.is_empty());
        assert_eq!(sent[2].outputs.len(), 1);
    }

    let stubborn = PickyChannel {
        refuse_everything: true,
        ..Default::default()
    };
    complete(&stubborn, &rich_outcome(), &Timings::fast()).await;
    let sent = stubborn.sent.lock().unwrap();
    assert_eq!(
        sent.len(),
        4,
        "full body and three reductions, then it gives up"
    );
    assert_eq!(sent[3], JobOutcome::with_result(TaskResult::Failed));
}
