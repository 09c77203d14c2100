//! What goes on the wire besides the payload: both reporters send through the runner's shared
//! client, so every request carries the User-Agent of the advertised runner version, the job
//! token goes to the service routes, and signed blob URLs get no `Authorization`.

use super::*;

const ADVERTISED: &str = "2.999.7";

/// Runs the script through a reporter built by `start` against a capturing service; returns
/// what the service saw.
async fn capture(start: impl FnOnce(ReportTarget, HttpClient) -> Reporter) -> Vec<Seen> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = Service::capturing(Arc::clone(&seen)).await;
    let http = http();
    // As `VersionPolicy::bind` does once the runner advertises a newer version.
    http.user_agent().set_runner_version(ADVERTISED);
    let outcome = run(start(service.target(), http), script()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    seen
}

fn assert_current_user_agent(seen: &[Seen]) {
    for request in seen {
        let agent = request.user_agent.as_deref().unwrap_or_default();
        assert!(
            agent.starts_with("GitHubActionsRunner-")
                && agent.contains(&format!("/{ADVERTISED} ghrunner-vm/")),
            "{} {} sent User-Agent {agent:?}",
            request.method,
            request.path
        );
    }
}

#[tokio::test]
async fn legacy_requests_carry_the_current_user_agent_and_the_job_token() {
    let seen = capture(|target, http| Reporter::legacy(target, http, options())).await;
    assert_current_user_agent(&seen);
    for request in &seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{} {}",
            request.method,
            request.path
        );
    }
    for kind in ["PATCH", "POST", "PUT"] {
        assert!(seen.iter().any(|r| r.method == kind), "no {kind} seen");
    }
}

#[tokio::test]
async fn results_requests_carry_the_current_user_agent_and_blobs_no_token() {
    let seen = capture(|target, http| Reporter::results(target, http, options()).unwrap()).await;
    assert_current_user_agent(&seen);
    let (blobs, twirp): (Vec<&Seen>, Vec<&Seen>) =
        seen.iter().partition(|r| r.path.contains("/blob/"));
    assert!(!blobs.is_empty() && !twirp.is_empty());
    for blob in blobs {
        assert_eq!(blob.method, "PUT");
        assert_eq!(
            blob.authorization, None,
            "a signed blob URL got the job token: {}",
            blob.path
        );
    }
    for call in twirp {
        assert!(call.path.contains("/twirp/"), "{}", call.path);
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{}",
            call.path
        );
    }
}
