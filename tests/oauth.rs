//! OAuth against the local service: the client assertion is verified server-side, the access
//! token is cached, refreshed after a forced 401, and a deleted registration is reported as such.

use ghrunner_vm::client::http::RetryPolicy;
use ghrunner_vm::client::{ClientError, HttpClient, TokenProvider};
use ghrunner_vm::config::Credentials;
use ghrunner_vm::crypto::jwt::{JwtAlgorithm, decode_unverified};
use ghrunner_vm::crypto::rsa::RunnerKey;
use ghrunner_vm::localsvc::{Fault, LocalService, LocalServiceConfig};
use reqwest::Method;

/// Seeds the service with a runner holding `key` and returns its credentials.
fn seed_agent(svc: &LocalService, key: &RunnerKey, fips: bool) -> Credentials {
    svc.seed_runner(key, None, "2.330.0", fips).1
}

fn token_requests(svc: &LocalService) -> Vec<ghrunner_vm::localsvc::RecordedRequest> {
    svc.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/oauth2/token"))
        .collect()
}

#[tokio::test]
async fn token_is_fetched_cached_and_refreshed_after_a_forced_401() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let key = RunnerKey::generate().unwrap();
    let creds = seed_agent(&svc, &key, false);
    let http = HttpClient::new().unwrap();
    let tokens = TokenProvider::new(http.clone(), &creds, key).unwrap();

    let first = tokens.token().await.unwrap();
    assert_eq!(
        tokens.token().await.unwrap(),
        first,
        "second call is served from the cache"
    );
    assert_eq!(token_requests(&svc).len(), 1);

    // The form body carries an RS256 assertion for this client, audience = token URL.
    let req = &token_requests(&svc)[0];
    assert_eq!(req.query_param("x"), None);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("grant_type"), "client_credentials");
    let (header, claims) = decode_unverified(&get("client_assertion")).unwrap();
    assert_eq!(header.alg, "RS256");
    assert_eq!(claims.aud, creds.data.authorization_url);
    assert!(req.header("user-agent").unwrap().contains("ghrunner-vm/"));

    // A 401 on an authorized call makes the client fetch a new token and retry once.
    svc.inject(Fault::respond(
        "GET",
        "/distributedtask/pools",
        401,
        "expired",
    ));
    let pools_url = format!("{}_apis/distributedtask/pools", svc.tenant_url());
    let resp = http
        .send_authorized(&tokens, http.request(Method::GET, &pools_url))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(
        token_requests(&svc).len(),
        2,
        "a new token was fetched after the 401"
    );
    let second = tokens.token().await.unwrap();
    assert_ne!(second, first);
    let auths: Vec<String> = svc
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/distributedtask/pools"))
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(
        auths,
        [
            format!("Bearer {}", first.expose()),
            format!("Bearer {}", second.expose())
        ]
    );
}

#[tokio::test]
async fn ps256_assertion_is_accepted_when_fips_is_required() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let key = RunnerKey::generate().unwrap();
    let creds = seed_agent(&svc, &key, true);
    let tokens = TokenProvider::new(HttpClient::new().unwrap(), &creds, key).unwrap();
    assert_eq!(tokens.algorithm(), JwtAlgorithm::PS256);
    tokens.token().await.unwrap();
}

#[tokio::test]
async fn assertion_signed_with_another_key_is_refused() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let registered = RunnerKey::generate().unwrap();
    let creds = seed_agent(&svc, &registered, false);
    let impostor = RunnerKey::generate().unwrap();
    let tokens = TokenProvider::new(HttpClient::new().unwrap(), &creds, impostor).unwrap();
    let err = tokens.token().await.unwrap_err();
    assert!(matches!(err, ClientError::TokenRefused { .. }), "{err:?}");
}

#[tokio::test]
async fn deleted_registration_asks_to_register_again() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let key = RunnerKey::generate().unwrap();
    let creds = seed_agent(&svc, &key, false);
    svc.forget_agents();
    let tokens = TokenProvider::new(HttpClient::new().unwrap(), &creds, key).unwrap();
    let err = tokens.token().await.unwrap_err();
    assert!(err.is_registration_deleted(), "{err:?}");
    assert!(
        err.to_string().contains("register the runner again"),
        "{err}"
    );
}

#[tokio::test]
async fn token_endpoint_5xx_is_retried_and_dropped_connections_too() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let key = RunnerKey::generate().unwrap();
    let creds = seed_agent(&svc, &key, false);
    svc.inject(Fault::respond("POST", "/oauth2/token", 503, "{}"));
    svc.inject(Fault::drop_connection("POST", "/oauth2/token"));
    let fast = RetryPolicy::jittered(
        3,
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(20),
    );
    let tokens = TokenProvider::new(HttpClient::with_retry(fast).unwrap(), &creds, key).unwrap();
    tokens.token().await.unwrap();
    assert_eq!(token_requests(&svc).len(), 3);
}

#[tokio::test]
async fn unreachable_server_error_names_the_url() {
    let svc = LocalService::start(LocalServiceConfig::default())
        .await
        .unwrap();
    let key = RunnerKey::generate().unwrap();
    let creds = seed_agent(&svc, &key, false);
    let url = creds.data.authorization_url.clone();
    svc.shutdown().await;
    let tokens = TokenProvider::new(
        HttpClient::with_retry(RetryPolicy::NONE).unwrap(),
        &creds,
        key,
    )
    .unwrap();
    let err = tokens.token().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}
