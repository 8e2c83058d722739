//! Secrets never reach the logs or the disk: the real runner binary with debug logging
//! delivers with each kind of endpoint credential and a custom header, and neither its log,
//! nor the attempt log, nor any file of its data dir (a copy of the database, say) shows a
//! credential, a header value or a signing secret; its data dir and files, the sealing key
//! among them, are readable by the owner only.

use std::path::Path;

use e2e::process::{Output, RunnerProcess};
use e2e::{call, event, eventually, Behavior, Receiver, WAIT};
use serde_json::json;

#[cfg(unix)]
fn assert_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "{} is accessible to group or others: mode {:o}",
        path.display(),
        mode & 0o777
    );
}

#[cfg(not(unix))]
fn assert_owner_only(_: &Path) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_signing_secrets_never_reach_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let log_path = tmp.path().join("runner.log");
    // No platform key given: the runner generates one and writes the key file.
    let mut p = RunnerProcess::builder()
        .data_dir(&data_dir)
        .env_remove("WEBHOOKS_LOG_FORMAT")
        .log_level("debug")
        .output(Output::File(log_path.clone()))
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let key = std::fs::read_to_string(data_dir.join("platform-key"))
        .expect("a generated platform key is kept in the data dir")
        .trim()
        .to_string();

    const API_KEY: &str = "sekret-apikey-123";
    const PASSWORD: &str = "sekret-basic-456";
    const TOKEN: &str = "sekret-bearer-789";
    const TENANT_TOKEN: &str = "sekret-header-246";
    let basic_header = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("svc-user:{PASSWORD}"))
    };

    let r = Receiver::start().await;
    let auths = [
        (
            "apikey",
            json!({"type": "api_key", "header": "x-api-key", "value": API_KEY}),
        ),
        (
            "basic",
            json!({"type": "basic", "username": "svc-user", "password": PASSWORD}),
        ),
        ("bearer", json!({"type": "bearer", "token": TOKEN})),
    ];
    let mut subs = Vec::new();
    for (path, auth) in auths {
        let (status, sub) = call(
            &http,
            &format!("{}/v1/accounts/acct_log/webhooks", p.base()),
            reqwest::Method::POST,
            &key,
            Some(json!({"url": r.url(path, Behavior::Sequence(vec![500])),
                        "event_types": ["*"], "retry_schedule": [1], "auth": auth,
                        "headers": {"X-Tenant-Token": TENANT_TOKEN}})),
        )
        .await;
        assert_eq!(status, 201, "{sub}");
        subs.push((path, sub));
    }
    let (status, accepted) = call(
        &http,
        &format!("{}/v1/events", p.base()),
        reqwest::Method::POST,
        &key,
        Some(event("call.ended", "acct_log", Some("evt_log"))),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");

    for (path, sub) in &subs {
        let got = r.wait_for(path, 2, WAIT).await;
        // The credentials were really sent, so their absence from the log means something.
        let sent = match *path {
            "apikey" => got[0].header("x-api-key").to_string(),
            _ => got[0].header("authorization").to_string(),
        };
        let expected = match *path {
            "apikey" => API_KEY.to_string(),
            "basic" => format!("Basic {basic_header}"),
            _ => format!("Bearer {TOKEN}"),
        };
        assert_eq!(sent, expected, "{path}: credentials not sent");
        assert_eq!(got[0].header("x-tenant-token"), TENANT_TOKEN);
        // And the success was logged before the process goes.
        let id = e2e::delivery_id_at(
            &http,
            p.base(),
            &key,
            "acct_log",
            "evt_log",
            sub["id"].as_str().unwrap(),
        )
        .await;
        let d = eventually(
            &format!("{path}: the delivery to succeed"),
            WAIT,
            || async {
                let (code, d) = call(
                    &http,
                    &format!("{}/v1/accounts/acct_log/deliveries/{id}", p.base()),
                    reqwest::Method::GET,
                    &key,
                    None,
                )
                .await;
                if code == 200 && d["status"] == "succeeded" {
                    Ok(d)
                } else {
                    Err(d.to_string())
                }
            },
        )
        .await;
        // The attempt log shows the credentials masked.
        let text = d.to_string();
        for secret in [
            API_KEY,
            PASSWORD,
            TOKEN,
            TENANT_TOKEN,
            basic_header.as_str(),
        ] {
            assert!(
                !text.contains(secret),
                "{path}: the attempt log shows a credential: {d}"
            );
        }
    }
    p.kill();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("delivery attempt failed"),
        "the log does not show the run (is RUST_LOG honoured?); {} bytes:\n{}",
        log.len(),
        log.chars().take(4000).collect::<String>()
    );
    let mut secrets: Vec<(String, String)> = vec![
        ("api key value".into(), API_KEY.into()),
        ("basic password".into(), PASSWORD.into()),
        ("basic authorization header".into(), basic_header.clone()),
        ("bearer token".into(), TOKEN.into()),
        ("custom header value".into(), TENANT_TOKEN.into()),
    ];
    for (path, sub) in &subs {
        let secret = sub["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_") && secret.len() > 20, "{sub}");
        secrets.push((format!("{path} signing secret"), secret.into()));
        // The key part alone, in case it is logged without its prefix.
        secrets.push((
            format!("{path} signing key"),
            secret.trim_start_matches("whsec_").into(),
        ));
    }
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, s)| log.contains(s.as_str()))
        .map(|(what, s)| {
            let line = log.lines().find(|l| l.contains(s.as_str())).unwrap_or("");
            format!("{what} in: {}", line.chars().take(500).collect::<String>())
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );

    // A copy of the data dir (the database, its WAL) holds every secret sealed: none of
    // them in clear, whatever the page a value landed on.
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "platform-key" || name == "sealing-key" {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for (what, secret) in &secrets {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                on_disk.push(format!("{what} in {name}"));
            }
        }
    }
    assert!(
        on_disk.is_empty(),
        "secrets in clear on disk:\n{}",
        on_disk.join("\n")
    );

    assert_owner_only(&data_dir);
    assert_owner_only(&data_dir.join("webhooks.db"));
    assert_owner_only(&data_dir.join("platform-key"));
    assert_owner_only(&data_dir.join("sealing-key"));
}
