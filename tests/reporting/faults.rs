//! Refusals and faults: oversized updates sent again smaller, upload faults retried, a
//! persistent failure reported without failing the job, a wrong token refused.

use super::*;

#[tokio::test]
async fn a_timeline_update_refused_for_its_size_is_sent_again_without_the_annotations() {
    let service = Service::refusing_issues().await;
    let reporter = Reporter::legacy(service.target(), http(), options());
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    let s1 = &store.records[&id(S1)];
    assert_eq!(
        (s1["state"].as_str(), s1["result"].as_str()),
        (Some("completed"), Some("failed")),
        "the step is complete on the server"
    );
    assert_eq!(s1["issues"].as_array().map(Vec::len), Some(0));
    assert_eq!(s1["errorCount"], 1, "the count is kept");
    assert_eq!(store.records[&id(JOB)]["result"], "failed");
    let log = strip_timestamps(&store.record_log(&id(S1)).unwrap());
    assert_eq!(log, ["hello", "world"]);
    let completion = serde_json::to_value(&outcome.completion).unwrap();
    assert_eq!(
        completion["annotations"][0]["path"], "src/a.c",
        "completejob still carries the annotation (its own fallback drops it if refused)"
    );
}

#[tokio::test]
async fn legacy_upload_faults_are_retried() {
    let service = Service::start().await;
    service.fail("PATCH", "/records", 3);
    service.fail("POST", "/logs", 4);
    service.fail("POST", "/feed", 3);
    service.fail("PUT", "/attachments/", 3);
    let reporter = Reporter::legacy(service.target(), http(), options());
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert!(service.all_faults_hit(), "every fault was hit");
    let store = service.store();
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["hello", "world"]
    );
    assert_eq!(store.records[&id(S1)]["result"], "failed");
    assert_eq!(store.console_lines(&id(S1)), ["hello", "world"]);
    assert_eq!(store.attachments.len(), 1);
}

#[tokio::test]
async fn results_upload_faults_are_retried() {
    let service = Service::start().await;
    service.fail("POST", "WorkflowStepsUpdate", 3);
    service.fail("POST", "GetStepLogsSignedBlobURL", 3);
    service.fail("PUT", "/blob/logs/", 3);
    service.fail("POST", "CreateJobLogsMetadata", 3);
    service.fail("PUT", "/blob/summaries/", 3);
    let reporter = Reporter::results(service.target(), http(), options()).unwrap();
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert!(service.all_faults_hit(), "every fault was hit");
    let store = service.store();
    let blob = store.results_log(&id(JOB), &id(S1)).unwrap();
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&blob.content)),
        ["hello", "world"]
    );
    assert_eq!(store.latest_step(&id(S1)).unwrap()["conclusion"], 3);
    assert_eq!(store.metadata[&format!("logs/{JOB}/job")]["line_count"], 1);
}

#[tokio::test]
async fn a_persistent_failure_is_reported_but_never_fails_the_job() {
    let service = Service::start().await;
    service.fail("PUT", "/attachments/", 1000);
    let reporter = Reporter::legacy(service.target(), http(), options());
    let outcome = run(reporter, script()).await;
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    assert!(
        outcome.failures[0]
            .to_string()
            .contains("summary attachment"),
        "{}",
        outcome.failures[0]
    );
    assert_eq!(outcome.completion.step_results.len(), 2);
    let store = service.store();
    assert_eq!(store.records[&id(JOB)]["state"], "completed");
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["hello", "world"]
    );
}

#[tokio::test]
async fn plain_blob_storage_gets_the_same_uploads_without_azure_headers() {
    let service = Service::start().await;
    with_store(&service.shared, |store| {
        store.blob_storage_type = "BLOB_STORAGE_TYPE_UNSPECIFIED".into()
    });
    let reporter = Reporter::results(service.target(), http(), options()).unwrap();
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    let blob = store.results_log(&id(JOB), &id(S2)).unwrap();
    assert!(blob.sealed);
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&blob.content)),
        ["summary written"]
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_reported() {
    let service = Service::start().await;
    let mut target = service.target();
    target.access_token = "wrong".into();
    let reporter = Reporter::legacy(target, http(), options());
    let outcome = run(reporter, script()).await;
    let refused = outcome
        .failures
        .iter()
        .filter(|f| f.to_string().contains("answered 401"))
        .count();
    assert!(refused > 0, "{:?}", outcome.failures);
    assert!(service.store().records.is_empty());
}

#[tokio::test]
async fn a_one_mib_line_is_whole_in_the_log_and_cut_in_the_live_view() {
    let service = Service::start().await;
    let big = "y".repeat(1024 * 1024);
    let events = vec![
        JobEvent::JobStarted { at: at(0) },
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "Big".into(),
            at: at(1),
        },
        log(S1, "before"),
        log(S1, &big),
        log(S1, "after"),
        JobEvent::StepCompleted {
            step_id: S1,
            result: TaskResult::Succeeded,
            at: at(2),
        },
        JobEvent::JobCompleted {
            result: TaskResult::Succeeded,
            outputs: vec![],
            at: at(3),
        },
    ];
    let reporter = Reporter::legacy(service.target(), http(), options());
    let outcome = run(reporter, events).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["before", big.as_str(), "after"]
    );
    let cut = format!("{}...", "y".repeat(1024));
    assert_eq!(
        store.console_lines(&id(S1)),
        ["before", cut.as_str(), "after"]
    );
}
