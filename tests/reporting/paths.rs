//! One scripted job on each path: the records, logs, console, annotations and summary GitHub
//! would show.

use super::*;

#[tokio::test]
async fn legacy_reports_records_logs_feed_annotations_and_summary() {
    let service = Service::start().await;
    let reporter = Reporter::legacy(service.target(), http(), options());
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);

    let store = service.store();
    let job = &store.records[&id(JOB)];
    assert_eq!(
        (
            job["type"].as_str(),
            job["state"].as_str(),
            job["result"].as_str()
        ),
        (Some("Job"), Some("completed"), Some("failed"))
    );
    assert_eq!(job["workerName"], "vm-runner");
    let s1 = &store.records[&id(S1)];
    assert_eq!(s1["type"], "Task");
    assert_eq!(s1["parentId"], id(JOB));
    assert_eq!(
        (s1["order"].as_u64(), s1["name"].as_str()),
        (Some(1), Some("Build"))
    );
    assert_eq!(
        (s1["state"].as_str(), s1["result"].as_str()),
        (Some("completed"), Some("failed"))
    );
    assert_eq!(s1["startTime"], "2026-07-01T12:00:01.250Z");
    assert_eq!(s1["errorCount"], 1);
    assert_eq!(s1["issues"][0]["type"], "error");
    assert_eq!(s1["issues"][0]["message"], "compile failed");
    assert_eq!(s1["issues"][0]["data"]["file"], "src/a.c");
    assert_eq!(s1["issues"][0]["data"]["line"], "3");
    assert_eq!(store.records[&id(S2)]["result"], "succeeded");

    assert_eq!(
        strip_timestamps(&store.record_log(&id(S1)).unwrap()),
        ["hello", "world"]
    );
    assert_eq!(
        strip_timestamps(&store.record_log(&id(S2)).unwrap()),
        ["summary written"]
    );
    assert_eq!(
        strip_timestamps(&store.record_log(&id(JOB)).unwrap()),
        ["Set up job"]
    );
    let (path, _) = &store.logs[&store.records[&id(S1)]["log"]["id"].as_i64().unwrap()];
    assert_eq!(path, &format!("logs\\{S1}"));

    assert_eq!(store.console_lines(&id(S1)), ["hello", "world"]);
    assert!(store.feed.iter().all(|m| m.record_id == id(JOB)));
    assert_eq!(
        store
            .feed
            .iter()
            .find(|m| m.step_id == id(S2))
            .unwrap()
            .start_line,
        1
    );

    let summary = &store.attachments[&(id(JOB), "Checks.Step.Summary".to_owned(), id(S2))];
    assert_eq!(summary, b"# Summary\n\nall good\n");

    let completion = serde_json::to_value(&outcome.completion).unwrap();
    assert_eq!(completion["stepResults"][0]["external_id"], id(S1));
    assert_eq!(completion["stepResults"][0]["conclusion"], "failed");
    assert_eq!(completion["stepResults"][0]["completed_log_lines"], 2);
    assert_eq!(
        completion["stepResults"][0]["annotations"][0]["level"],
        "failure"
    );
    assert_eq!(completion["annotations"][0]["path"], "src/a.c");
    assert_eq!(completion["annotations"][0]["stepNumber"], 1);
    assert_eq!(
        outcome.job_result,
        Some((TaskResult::Failed, vec![("v".into(), "1".into())]))
    );
}

#[tokio::test]
async fn results_reports_steps_logs_and_summary() {
    let service = Service::start().await;
    let reporter = Reporter::results(service.target(), http(), options()).unwrap();
    let outcome = run(reporter, script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);

    let store = service.store();
    let orders: Vec<i64> = store
        .step_updates
        .iter()
        .map(|u| u["change_order"].as_i64().unwrap())
        .collect();
    assert_eq!(orders, (1..=orders.len() as i64).collect::<Vec<_>>());
    assert!(
        store
            .step_updates
            .iter()
            .all(|u| u["workflow_job_run_backend_id"] == id(JOB))
    );
    let s1 = store.latest_step(&id(S1)).unwrap();
    assert_eq!(
        (s1["status"].as_i64(), s1["conclusion"].as_i64()),
        (Some(6), Some(3))
    );
    assert_eq!(s1["started_at"], "2026-07-01T12:00:01.250Z");
    assert_eq!(s1["completed_at"], "2026-07-01T12:00:02.250Z");
    let s2 = store.latest_step(&id(S2)).unwrap();
    assert_eq!(
        (
            s2["status"].as_i64(),
            s2["conclusion"].as_i64(),
            s2["number"].as_i64()
        ),
        (Some(6), Some(2), Some(2))
    );
    assert!(
        store.latest_step(&id(JOB)).is_none(),
        "the job record is not a step"
    );

    let blob = store.results_log(&id(JOB), &id(S1)).unwrap();
    assert!(blob.append && blob.sealed);
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&blob.content)),
        ["hello", "world"]
    );
    let meta = &store.metadata[&format!("logs/{JOB}/{S1}")];
    assert_eq!(meta["line_count"], 2);
    let job_log = store.results_log(&id(JOB), "job").unwrap();
    assert_eq!(
        strip_timestamps(&String::from_utf8_lossy(&job_log.content)),
        ["Set up job"]
    );
    assert_eq!(store.metadata[&format!("logs/{JOB}/job")]["line_count"], 1);

    let summary_key = format!("summaries/{JOB}/{S2}");
    assert_eq!(
        store.blobs[&summary_key].content,
        b"# Summary\n\nall good\n"
    );
    assert_eq!(store.metadata[&summary_key]["size"], 20);
    assert_eq!(outcome.completion.step_results.len(), 2);
}
