//! Tracing output during registration and a token exchange, at TRACE level for every crate,
//! contains no registration token, tenant token, access token, client assertion or private-key
//! material.

mod support;

use ghrunner_vm::client::{HttpClient, TokenProvider};
use ghrunner_vm::config::runner::Registration;
use ghrunner_vm::localsvc::DEFAULT_REGISTRATION_TOKEN;
use support::cli::{reg_dir, register, service};
use support::logs::Buffer;

#[tokio::test]
async fn registration_and_token_exchange_log_no_secrets() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded: every task logs through this default.
    let _guard = tracing::subscriber::set_default(subscriber);

    for v2 in [false, true] {
        let svc = service(v2).await;
        let dir = tempfile::tempdir().unwrap();
        register(dir.path(), &svc.repo_url("o", "r"), "quiet", &[])
            .await
            .unwrap();
        let reg = Registration::load(&reg_dir(dir.path(), "quiet")).unwrap();
        let tokens = TokenProvider::for_registration(HttpClient::new().unwrap(), &reg).unwrap();
        let access = tokens.token().await.unwrap();

        let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(
            logs.contains("runner registered"),
            "the capture works: {logs}"
        );
        assert!(logs.contains("obtained access token"), "the capture works");

        let mut secrets: Vec<String> = vec![
            DEFAULT_REGISTRATION_TOKEN.to_owned(),
            access.expose().to_owned(),
        ];
        let state = svc.state();
        {
            let state = state.lock();
            secrets.extend(state.tenant_tokens.keys().cloned());
            secrets.extend(state.access_tokens.keys().cloned());
        }
        let params = reg.key.to_params();
        secrets.extend([
            params.d,
            params.p,
            params.q,
            params.dp,
            params.dq,
            params.inverse_q,
        ]);
        for request in svc
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/oauth2/token"))
        {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect();
            let assertion = form
                .iter()
                .find(|(k, _)| k == "client_assertion")
                .unwrap()
                .1
                .clone();
            // The signature part is enough to identify the assertion.
            secrets.push(assertion.rsplit('.').next().unwrap().to_owned());
        }
        assert!(secrets.len() >= 10);
        for secret in &secrets {
            // Also catch base64 fragments of key material.
            let probe = &secret[..secret.len().min(24)];
            assert!(
                !logs.contains(probe),
                "a secret appears in the logs: {probe}…"
            );
        }
    }
}
