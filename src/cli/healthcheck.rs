//! `callpool healthcheck`: asks a node's `/readyz` (or another URL) once and exits 0 when it answers
//! 2xx, 1 otherwise. The container image's HEALTHCHECK, which has no curl.

use std::process::ExitCode;
use std::time::Duration;

/// What `--url` defaults to: the default listen address's readiness.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/readyz";

pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let asked = async {
        let client = reqwest::Client::builder().timeout(timeout).no_proxy().build()?;
        client.get(url).send().await.map(|r| r.status())
    };
    let answer = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(asked),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match answer {
        Ok(status) if status.is_success() => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("{url}: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}
