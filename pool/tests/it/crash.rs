//! The embedded store writes before it answers: a process killed with SIGKILL right after
//! acknowledging leases must find every acknowledged lease when the pool is opened again.
//!
//! The test runs itself as a child process (the `child_role` test, selected by an environment
//! variable), which leases numbers as fast as it can and prints each acknowledgement; the
//! parent kills it mid-stream and checks the file.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::common::*;
use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::{Grant, NumberSpec, Pool, SessionAttrs, VisitorId};

const CHILD_ENV: &str = "CALLPOOL_CRASH_CHILD_DIR";

fn crash_spec() -> callpool_pool::PoolSpec {
    let a = site("a");
    let numbers = (0..2000).map(|i| NumberSpec { number: num(i), dedicated_to: Some(a.clone()) }).collect();
    spec(numbers, &[("a", rules(2000))])
}

/// The child: leases for visitors 0, 1, 2, ... from 64 tasks at once, printing each
/// acknowledgement, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_role() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let pool = Pool::Embedded(EmbeddedPool::open(std::path::Path::new(&dir)).unwrap());
    pool.configure(&crash_spec(), T0).await.unwrap();
    println!("ready");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (pool, next) = (pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= 2000 {
                    return;
                }
                let v = VisitorId::new(format!("v{i}")).unwrap();
                if let Grant::Leased { lease, .. } =
                    pool.acquire(&site("a"), &v, &SessionAttrs::default(), T0).await.unwrap()
                {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "acked {} {} {}", v, lease.number, lease.id).unwrap();
                    out.flush().unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn acknowledged_leases_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::child_role", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("acked ") {
            let parts: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            acked.push(parts);
            if acked.len() == 300 {
                // Mid-stream: other leases are being applied and committed right now.
                Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 300, "the child acknowledged leases before it was killed");

    let pool = Pool::Embedded(EmbeddedPool::open(dir.path()).unwrap());
    for parts in &acked {
        let v = VisitorId::new(parts[0].clone()).unwrap();
        let lease = pool.current(&site("a"), &v, T0).await.unwrap();
        let lease = lease.unwrap_or_else(|| panic!("acknowledged lease of {} lost by the crash", parts[0]));
        assert_eq!((lease.number.to_string(), lease.id.to_string()), (parts[1].clone(), parts[2].clone()));
    }
    let st = pool.status(&site("a"), T0).await.unwrap().unwrap();
    assert!(st.leased as usize >= acked.len(), "the working set agrees with the leases");
    assert_eq!(st.leased + st.free, 2000);
}
