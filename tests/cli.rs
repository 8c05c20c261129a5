//! Startup errors of `cdcview serve`, through the real binary: each says what
//! is wrong and how to fix it in one line and exits non-zero, or, for what may
//! come up later (the broker), keeps retrying and says so in `/status`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdcview"));
    cmd.arg("serve").args(args).env_clear().env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// Runs to completion (or fails the test after 20 s); returns the exit
/// status and the `error:` line.
fn fails_with(args: &[&str]) -> String {
    let mut child = serve(args).spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("cdcview serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "{args:?} exited successfully");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    errors[0].to_string()
}

#[test]
fn a_port_already_taken_is_named_with_the_fix() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = fails_with(&["--listen", &addr, "--brokers", "127.0.0.1:1"]);
    assert!(line.contains(&format!("cannot listen on {addr}")) && line.contains("CDCVIEW_LISTEN"), "{line}");
}

#[test]
fn a_malformed_database_url_is_named() {
    let line = fails_with(&["--listen", "127.0.0.1:0", "--brokers", "127.0.0.1:1", "--mysql-url", "not a url"]);
    assert!(line.contains("CDCVIEW_MYSQL_URL"), "{line}");
}

#[test]
fn an_unknown_flag_gets_usage_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_cdcview")).args(["serve", "--brokrs", "x"]).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--brokers") && text.contains("Usage"), "{text}");
}

/// An unreachable broker may come up later: cdcview keeps serving, retries,
/// says what is wrong in `/status`, and is not ready.
#[tokio::test]
async fn an_unreachable_broker_is_retried_and_reported() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = serve(&["--listen", &listen, "--brokers", "127.0.0.1:1"]).spawn().unwrap();
    let base = format!("http://{listen}");
    let start = Instant::now();
    let status = loop {
        if let Ok(resp) = reqwest::get(format!("{base}/status")).await {
            let status: serde_json::Value = resp.json().await.unwrap();
            if status["source"]["error"].is_string() {
                break status;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no source error reported");
        assert!(child.try_wait().unwrap().is_none(), "cdcview exited instead of retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap().status().as_u16();
    child.kill().unwrap();
    let _ = child.wait();
    let error = status["source"]["error"].as_str().unwrap();
    assert!(error.contains("127.0.0.1:1") && error.contains("CDCVIEW_BROKERS"), "{status}");
    assert_eq!(ready, 503);
}
