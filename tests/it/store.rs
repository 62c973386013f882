//! The store's conformance suite: every behaviour of every stored concept (calls, callbacks,
//! jobs, visits, usage), run on both backends — the embedded redb file and Redis — with the same
//! expected answers.

use std::time::Duration;

use callpool::callback::limits::{Limits, Scope, Window};
use callpool::callback::{Callback, CallbackId, CallbackStatus, Channel};
use callpool::calls::{Call, CallKey, CallStatus, Caller, CallerMemory, Match, MatchKind, NumberKind};
use callpool::store::callbacks::{Created, Updated};
use callpool::store::calls::CallWrite;
use callpool::store::jobs::{JobState, Plan, Planned, Record, Records, Settle};
use callpool::store::visits::VisitRecord;
use callpool::store::Store;
use callpool_pool::redis_store::{RedisOptions, RedisPool};
use callpool_pool::{PhoneNumber, Pool, SessionAttrs, SiteId, Ts, VisitorId};

use crate::common::{redis_url, unique, T0};
use crate::pki::Pki;

/// Both backends, fresh: (name, store, what keeps the embedded one's directory alive).
async fn stores(test: &str) -> Vec<(&'static str, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Store::embedded(dir.path()).unwrap();
    let opts = RedisOptions { url: redis_url(), prefix: unique(test), response_timeout: Duration::from_secs(2) };
    let redis = Store::open(&Pool::Redis(RedisPool::connect(&opts).await.unwrap()), None).unwrap();
    vec![("embedded", embedded, Some(dir)), ("redis", redis, None)]
}

fn shop() -> SiteId {
    SiteId::new("shop").unwrap()
}

fn at(s: i64) -> Ts {
    T0.plus(Duration::from_secs(s as u64))
}

fn call(id: &str, started: Ts) -> Call {
    Call {
        key: CallKey::new("pbx", id).unwrap(),
        called: PhoneNumber::parse("+74951230001").unwrap(),
        caller: Caller::parse("+79161234567"),
        started_at: started,
        answered_at: None,
        ended_at: None,
        status: CallStatus::Ringing,
        duration: None,
        recording_url: None,
        received_at: started,
        updated_at: started,
        matched: Match {
            kind: MatchKind::Active,
            site: Some(shop()),
            number_kind: NumberKind::Tracking,
            visitor: Some(VisitorId::new("v1").unwrap()),
            lease: None,
            attrs: SessionAttrs::default(),
        },
        first_time_caller: true,
        version: 1,
    }
}

fn new_call<'a>(c: &'a Call, jobs: &'a [Planned]) -> CallWrite<'a> {
    CallWrite { call: c, expected: 0, caller: None, jobs, hurry: &[] }
}

#[tokio::test]
async fn calls_are_versioned_indexed_by_site_and_remember_callers() {
    for (name, s, _dir) in stores("calls").await {
        let c1 = call("c1", at(10));
        assert!(s.save_call(Some(&shop()), new_call(&c1, &[])).await.unwrap(), "{name}");
        assert!(!s.save_call(Some(&shop()), new_call(&c1, &[])).await.unwrap(), "{name}: a second first write loses");
        let mut c1b = c1.clone();
        c1b.status = CallStatus::Completed;
        c1b.version = 2;
        let stale = CallWrite { call: &c1b, expected: 5, caller: None, jobs: &[], hurry: &[] };
        assert!(!s.save_call(Some(&shop()), stale).await.unwrap(), "{name}: a write that read another version loses");
        let memory = CallerMemory { last_call_at: at(10), last_match: None };
        let caller = c1.caller.clone().unwrap();
        let update = CallWrite {
            call: &c1b,
            expected: 1,
            caller: Some((&caller, &memory, Duration::from_secs(3600))),
            jobs: &[],
            hurry: &[],
        };
        assert!(s.save_call(Some(&shop()), update).await.unwrap(), "{name}");
        assert_eq!(s.call(&c1.key).await.unwrap(), Some(c1b.clone()), "{name}");
        assert_eq!(s.caller(&shop(), &caller).await.unwrap(), Some(memory), "{name}");
        assert_eq!(s.caller(&SiteId::new("other").unwrap(), &caller).await.unwrap(), None, "{name}: per site");
        let c2 = call("c2", at(20));
        let nowhere = call("c3", at(15));
        assert!(s.save_call(Some(&shop()), new_call(&c2, &[])).await.unwrap());
        assert!(s.save_call(None, new_call(&nowhere, &[])).await.unwrap());
        let keys = |v: Vec<Call>| v.into_iter().map(|c| c.key.to_string()).collect::<Vec<_>>();
        assert_eq!(keys(s.calls(Some(&shop()), at(0), at(30), 10).await.unwrap()), ["pbx:c1", "pbx:c2"], "{name}");
        assert_eq!(keys(s.calls(Some(&shop()), at(11), at(30), 10).await.unwrap()), ["pbx:c2"], "{name}: from");
        assert_eq!(keys(s.calls(Some(&shop()), at(0), at(30), 1).await.unwrap()), ["pbx:c1"], "{name}: limit");
        assert_eq!(keys(s.calls(None, at(0), at(30), 10).await.unwrap()), ["pbx:c3"], "{name}: no site");
    }
}

#[tokio::test]
async fn jobs_are_claimed_once_retried_dead_lettered_and_requeued() {
    for (name, s, _dir) in stores("jobs").await {
        let c = call("j1", at(0));
        let plans = [
            Planned { kind: "ga4", plan: Plan::Due(at(60)) },
            Planned { kind: "yandex", plan: Plan::Skip("not configured".into()) },
        ];
        assert!(s.save_call(Some(&shop()), new_call(&c, &plans)).await.unwrap());
        let ids = vec![c.key.to_string()];
        assert_eq!(s.job_states("ga4", &ids).await.unwrap(), [Some(JobState::Pending)], "{name}");
        assert_eq!(
            s.job_states("yandex", &ids).await.unwrap(),
            [Some(JobState::Skipped { reason: "not configured".into() })],
            "{name}: a skipped job is a state, not a queue entry"
        );
        assert_eq!(s.job_depth("ga4").await.unwrap(), (1, 0), "{name}");
        assert_eq!(s.job_depth("yandex").await.unwrap(), (0, 0), "{name}");
        let claim = |now: Ts| s.claim_jobs("ga4", Records::Calls, now, 10, now.plus(Duration::from_secs(30)));
        assert!(claim(at(59)).await.unwrap().is_empty(), "{name}: not due yet");
        let got = claim(at(60)).await.unwrap();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].id, "pbx:j1");
        assert_eq!(got[0].attempts, 0);
        assert!(
            matches!(&got[0].record, Record::Call(rc) if rc.key == c.key),
            "{name}: the record comes with the claim"
        );
        assert!(claim(at(61)).await.unwrap().is_empty(), "{name}: a claimed job is held");
        assert_eq!(claim(at(91)).await.unwrap().len(), 1, "{name}: a claim whose node died comes back");
        s.settle_jobs("ga4", &[(got[0].id.clone(), Settle::Retry(at(200)))], at(95)).await.unwrap();
        assert!(claim(at(199)).await.unwrap().is_empty(), "{name}: retried later");
        let waited = claim(at(200)).await.unwrap();
        assert_eq!(waited[0].attempts, 1, "{name}: the failed attempt counted");
        // Waiting for an earlier delivery of the record counts no attempt.
        s.settle_jobs("ga4", &[(waited[0].id.clone(), Settle::Wait(at(202)))], at(200)).await.unwrap();
        assert!(claim(at(201)).await.unwrap().is_empty(), "{name}: waits until then");
        let again = claim(at(202)).await.unwrap();
        assert_eq!(again[0].attempts, 1, "{name}: a wait is no attempt");
        let dead = JobState::Dead { error: "refused: HTTP 400".into() };
        s.settle_jobs("ga4", &[(again[0].id.clone(), Settle::Done(dead.clone()))], at(201)).await.unwrap();
        assert_eq!(s.job_states("ga4", &ids).await.unwrap(), [Some(dead)], "{name}");
        assert_eq!(s.job_depth("ga4").await.unwrap(), (0, 1), "{name}");
        let letters = s.dead_jobs("ga4", 10).await.unwrap();
        assert_eq!(letters.len(), 1, "{name}");
        assert_eq!(
            (letters[0].id.as_str(), letters[0].since, letters[0].error.as_str()),
            ("pbx:j1", at(201), "refused: HTTP 400")
        );
        assert!(s.requeue_job("ga4", "pbx:j1", at(300)).await.unwrap(), "{name}");
        assert!(!s.requeue_job("ga4", "pbx:j1", at(300)).await.unwrap(), "{name}: no longer a dead letter");
        assert!(!s.requeue_job("ga4", "pbx:nope", at(300)).await.unwrap(), "{name}");
        assert_eq!(s.job_depth("ga4").await.unwrap(), (1, 0), "{name}");
        let requeued = claim(at(300)).await.unwrap();
        assert_eq!((requeued.len(), requeued[0].attempts), (1, 0), "{name}: due now, attempts forgotten");
        let sent = JobState::sent(at(301));
        s.settle_jobs("ga4", &[(requeued[0].id.clone(), Settle::Done(sent.clone()))], at(301)).await.unwrap();
        assert!(claim(at(10_000)).await.unwrap().is_empty(), "{name}: a sent job is never claimed again");
        assert_eq!(s.job_states("ga4", &ids).await.unwrap(), [Some(sent)], "{name}");
        assert_eq!(s.job_depth("ga4").await.unwrap(), (0, 0), "{name}");
    }
}

#[tokio::test]
async fn a_final_report_hurries_its_jobs_and_forgetting_a_call_forgets_its_jobs() {
    for (name, s, _dir) in stores("hurry").await {
        let c = call("h1", at(0));
        let plans = [Planned { kind: "ga4", plan: Plan::Due(at(3600)) }];
        assert!(s.save_call(Some(&shop()), new_call(&c, &plans)).await.unwrap());
        let mut done = c.clone();
        done.status = CallStatus::Completed;
        done.version = 2;
        let hurry = [("ga4", at(60)), ("yandex", at(60))];
        let write = CallWrite { call: &done, expected: 1, caller: None, jobs: &[], hurry: &hurry };
        assert!(s.save_call(Some(&shop()), write).await.unwrap());
        let claimed = s.claim_jobs("ga4", Records::Calls, at(60), 10, at(90)).await.unwrap();
        assert_eq!(claimed.len(), 1, "{name}: brought forward from an hour to a minute");
        assert!(matches!(&claimed[0].record, Record::Call(rc) if rc.status == CallStatus::Completed), "{name}");
        assert_eq!(s.job_depth("yandex").await.unwrap(), (0, 0), "{name}: hurrying creates no job");
        assert_eq!(s.forget_calls(&[shop()], at(1), 100, &["ga4", "yandex"]).await.unwrap(), 1, "{name}");
        assert_eq!(s.call(&c.key).await.unwrap(), None, "{name}");
        assert_eq!(s.job_states("ga4", &[c.key.to_string()]).await.unwrap(), [None], "{name}");
        assert_eq!(s.job_depth("ga4").await.unwrap(), (0, 0), "{name}: the claim went with it");
        assert_eq!(s.forget_calls(&[shop()], at(1), 100, &["ga4"]).await.unwrap(), 0, "{name}");
    }
}

fn callback(number: &str, requested: Ts) -> Callback {
    let id = CallbackId::random();
    Callback {
        id: id.clone(),
        site: shop(),
        number: PhoneNumber::parse(number).unwrap(),
        visitor: Some(VisitorId::new("v1").unwrap()),
        attrs: SessionAttrs::default(),
        channel: Channel::Widget,
        requested_at: requested,
        due_at: requested,
        status: CallbackStatus::Accepted,
        attempts: 0,
        next_attempt_at: None,
        error: None,
        pbx_ref: None,
        call: None,
        links: vec![CallKey::new("office", id.as_str()).unwrap()],
        turn: 0,
        turn_until: None,
        answered_by: None,
        updated_at: requested,
    }
}

fn limits() -> Limits {
    let w = |count, secs| Window { count, period: Duration::from_secs(secs) };
    Limits {
        per_number: vec![w(2, 600), w(3, 3600)],
        number_ban: Duration::from_secs(86_400),
        per_site: vec![w(4, 3600)],
        per_ip: vec![],
        per_visitor: vec![],
    }
}

#[tokio::test]
async fn callbacks_join_open_requests_count_limits_and_only_move_forward() {
    const KEEP: Duration = Duration::from_secs(86_400);
    for (name, s, _dir) in stores("callbacks").await {
        let jobs = [Planned { kind: "trigger", plan: Plan::Due(at(0)) }];
        let first = callback("+79161234567", at(0));
        assert_eq!(s.create_callback(&first, &limits(), None, &jobs, KEEP).await.unwrap(), Created::Stored, "{name}");
        let repeat = callback("+79161234567", at(1));
        assert_eq!(
            s.create_callback(&repeat, &limits(), None, &jobs, KEEP).await.unwrap(),
            Created::Open(first.id.clone()),
            "{name}: a request for a number whose callback is open joins it"
        );
        assert_eq!(s.callback(&first.id).await.unwrap().as_ref(), Some(&first), "{name}");
        assert_eq!(s.callback_for_call(&first.links[0]).await.unwrap().map(|c| c.id), Some(first.id.clone()), "{name}");
        assert_eq!(s.job_depth("trigger").await.unwrap(), (1, 0), "{name}: its jobs came with it");
        let mut done = first.clone();
        done.status = CallbackStatus::Completed;
        let missed = [Planned { kind: "tg_missed", plan: Plan::Due(at(2)) }];
        assert_eq!(s.update_callback(&done, &missed, KEEP).await.unwrap(), Updated::Written, "{name}");
        let mut late = first.clone();
        late.status = CallbackStatus::Calling;
        assert_eq!(s.update_callback(&late, &[], KEEP).await.unwrap(), Updated::Stale, "{name}: never backwards");
        assert_eq!(s.update_callback(&done, &[], KEEP).await.unwrap(), Updated::Stale, "{name}: a final status stays");
        assert_eq!(s.update_callback(&callback("+79161234567", at(2)), &[], KEEP).await.unwrap(), Updated::Missing);
        assert_eq!(s.job_depth("tg_missed").await.unwrap(), (1, 0), "{name}");
        // The number's second request (the first is over) is counted; its third within ten minutes is not.
        let second = callback("+79161234567", at(3));
        assert_eq!(s.create_callback(&second, &limits(), None, &[], KEEP).await.unwrap(), Created::Stored, "{name}");
        let mut over = second.clone();
        over.status = CallbackStatus::Failed;
        s.update_callback(&over, &[], KEEP).await.unwrap();
        match s.create_callback(&callback("+79161234567", at(4)), &limits(), None, &[], KEEP).await.unwrap() {
            Created::Refused { scope: Scope::Number, retry_after } => {
                assert_eq!(retry_after, Duration::from_secs(596), "{name}: until the oldest leaves the window")
            }
            other => panic!("{name}: {other:?}"),
        }
        // The site's window: four requests an hour.
        for (i, n) in ["+79161230001", "+79161230002"].iter().enumerate() {
            let cb = callback(n, at(5 + i as i64));
            assert_eq!(s.create_callback(&cb, &limits(), None, &[], KEEP).await.unwrap(), Created::Stored, "{name}");
        }
        assert!(matches!(
            s.create_callback(&callback("+79161230003", at(8)), &limits(), None, &[], KEEP).await.unwrap(),
            Created::Refused { scope: Scope::Site, .. }
        ));
        let listed: Vec<CallbackId> =
            s.callbacks(&shop(), at(0), at(10), 10).await.unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(listed.len(), 4, "{name}");
        assert_eq!(listed[0], first.id, "{name}: oldest first");
        assert_eq!(s.forget_callbacks(&[shop()], at(4), 100, &["trigger", "tg_missed"]).await.unwrap(), 2, "{name}");
        assert_eq!(s.callback(&first.id).await.unwrap(), None, "{name}");
        assert_eq!(s.job_depth("tg_missed").await.unwrap(), (0, 0), "{name}: its jobs went with it");
    }
}

#[tokio::test]
async fn one_source_gets_half_of_the_sites_window() {
    const KEEP: Duration = Duration::from_secs(86_400);
    for (name, s, _dir) in stores("sources").await {
        let ask = |n: &str, t: i64, source: &'static str| {
            let cb = callback(n, at(t));
            let s = &s;
            async move { s.create_callback(&cb, &limits(), Some(source), &[], KEEP).await.unwrap() }
        };
        // Four requests an hour for the site: one address gets two of them.
        assert_eq!(ask("+79161230001", 0, "203.0.113.7").await, Created::Stored, "{name}");
        assert_eq!(ask("+79161230002", 60, "203.0.113.7").await, Created::Stored, "{name}");
        assert_eq!(
            ask("+79161230003", 120, "203.0.113.7").await,
            Created::Refused { scope: Scope::Ip, retry_after: Duration::from_secs(3480) },
            "{name}: until its oldest leaves the window"
        );
        assert_eq!(ask("+79161230003", 180, "2001:db8:1:2::").await, Created::Stored, "{name}: another source");
        assert_eq!(ask("+79161230004", 3601, "203.0.113.7").await, Created::Stored, "{name}: an hour later");
    }
}

#[tokio::test]
async fn a_number_that_uses_up_its_longest_window_is_banned() {
    const KEEP: Duration = Duration::from_secs(86_400);
    for (name, s, _dir) in stores("bans").await {
        let over = |cb: &Callback| {
            let mut c = cb.clone();
            c.status = CallbackStatus::Failed;
            c
        };
        for minute in [0, 20, 40] {
            let cb = callback("+79161234567", at(minute * 60));
            assert_eq!(s.create_callback(&cb, &limits(), None, &[], KEEP).await.unwrap(), Created::Stored, "{name}");
            s.update_callback(&over(&cb), &[], KEEP).await.unwrap();
        }
        assert_eq!(
            s.create_callback(&callback("+79161234567", at(50 * 60)), &limits(), None, &[], KEEP).await.unwrap(),
            Created::Refused { scope: Scope::Banned, retry_after: Duration::from_secs(86_400) },
            "{name}: three an hour is the longest window"
        );
        assert!(matches!(
            s.create_callback(&callback("+79161234567", at(3 * 3600)), &limits(), None, &[], KEEP).await.unwrap(),
            Created::Refused { scope: Scope::Banned, .. }
        ));
    }
}

#[tokio::test]
async fn visits_merge_across_nodes_and_usage_keeps_the_days_peak() {
    for (name, s, _dir) in stores("visits").await {
        let visit = |node_tabs: u32, last: i64| VisitRecord {
            visitor: "v1".into(),
            first_seen: at(0).as_millis(),
            last_active: at(last).as_millis(),
            closed: at(last + 5).as_millis(),
            tabs: node_tabs,
            source: "google".into(),
            tracked: true,
            campaign: Some("winter".into()),
            ..Default::default()
        };
        s.record_visit(&shop(), &visit(2, 30)).await.unwrap();
        s.record_visit(&shop(), &visit(1, 90)).await.unwrap();
        let got = s.visits(&shop(), at(0), at(100), 10).await.unwrap();
        assert_eq!(got, vec![VisitRecord { tabs: 2, ..visit(1, 90) }], "{name}: the latest activity, the most tabs");
        assert_eq!(s.forget_visits(&[shop()], at(1), 10).await.unwrap(), 1, "{name}");
        assert!(s.visits(&shop(), at(0), at(100), 10).await.unwrap().is_empty(), "{name}");

        s.record_usage(&shop(), "2026-01-01", 3, 10).await.unwrap();
        s.record_usage(&shop(), "2026-01-01", 5, 12).await.unwrap();
        s.record_usage(&shop(), "2026-01-01", 4, 15).await.unwrap();
        let days = ["2026-01-01".to_owned(), "2026-01-02".to_owned()];
        let usage = s.usage(&shop(), &days).await.unwrap();
        let day = usage[0].unwrap();
        assert_eq!((day.peak_leased, day.exhausted_first, day.exhausted_last), (5, 10, 15), "{name}");
        assert_eq!(usage[1], None, "{name}");
    }
}

/// A digest is written with its jobs once (a second write, from another node, changes nothing),
/// its job claims its record, and it is forgotten with its jobs.
#[tokio::test]
async fn a_digest_is_written_once_and_forgotten_with_its_jobs() {
    use callpool::store::digests::DigestRecord;
    for (name, s, _dir) in stores("digests").await {
        let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
        let d = DigestRecord::new(shop(), day("2026-11-30"), day("2026-12-06"), at(10));
        assert_eq!(d.id, "shop:2026-11-30:2026-12-06");
        let jobs = [Planned { kind: "digest_email", plan: Plan::Due(at(10)) }];
        assert!(s.create_digest(&d, &jobs).await.unwrap(), "{name}");
        assert!(!s.create_digest(&d, &jobs).await.unwrap(), "{name}: written once");
        let claimed = s.claim_jobs("digest_email", Records::Digests, at(11), 10, at(100)).await.unwrap();
        assert_eq!(claimed.len(), 1, "{name}: one job, not two");
        match &claimed[0].record {
            Record::Digest(got) => assert_eq!(**got, d, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        s.settle_jobs("digest_email", &[(d.id.clone(), Settle::Done(JobState::sent(at(12))))], at(12)).await.unwrap();
        assert!(!s.create_digest(&d, &jobs).await.unwrap(), "{name}: a sent digest is not written again");
        assert_eq!(s.forget_digests(&[shop()], at(11), 10, &["digest_email"]).await.unwrap(), 1, "{name}");
        assert_eq!(s.job_states("digest_email", std::slice::from_ref(&d.id)).await.unwrap(), vec![None], "{name}");
    }
}

// TLS to the backing services: throw-away certificates ([`Pki`]), a `redis-server` and a
// RabbitMQ that speak only TLS.

/// A `[store]` on `url` with the given extra settings, as a configuration.
fn tls_config(store: &str, bus: &str) -> callpool::config::Config {
    let text = crate::common::config_text(&format!("{store}\n\n{bus}"));
    callpool::config::Config::parse(&text, "tls.toml", &std::collections::HashMap::new()).expect("the TLS config")
}

/// `App::start` on `config`, which must fail within 15 s: its error.
async fn start_fails(config: callpool::config::Config) -> String {
    let clock = std::sync::Arc::new(callpool::clock::SystemClock);
    match tokio::time::timeout(Duration::from_secs(15), callpool::app::App::start(config, clock)).await {
        Ok(Ok(_)) => panic!("started"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("still starting after 15 s (a hang, not an error)"),
    }
}

/// A node reaches a Redis that speaks only TLS and wants a client certificate, trusting the CA of
/// `redis_ca_file`; a server certificate from another CA, a server name the certificate does not
/// hold, or no client certificate stop the start with an error that says so (no retrying).
#[tokio::test]
async fn redis_over_tls_checks_the_server_and_presents_the_client_certificate() {
    use crate::common::{free_port, Node, OwnRedis, ADMIN_TOKEN};
    let pki = Pki::new();
    let port = free_port();
    let tls_port = port.to_string();
    let _redis = OwnRedis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &pki.path("server.crt"),
            "--tls-key-file",
            &pki.path("server.key"),
            "--tls-ca-cert-file",
            &pki.path("ca.crt"),
            "--tls-auth-clients",
            "yes",
            "--requirepass",
            "SECRET-tls-redis-pw",
        ],
    );
    let store = |host: &str, ca: &str, client: bool| {
        let mut s = format!(
            "[store]\nkind = \"redis\"\nredis_url = \"rediss://{host}:{port}/\"\nredis_prefix = \"{}\"\n\
             redis_password = \"SECRET-tls-redis-pw\"\nredis_ca_file = {:?}\n",
            unique("tls"),
            pki.path(ca)
        );
        if client {
            s += &format!(
                "redis_client_cert_file = {:?}\nredis_client_key_path = {:?}\n",
                pki.path("client.crt"),
                pki.path("client.key")
            );
        }
        s
    };

    let node = Node::start_real(tls_config(&store("127.0.0.1", "ca.crt", true), "")).await;
    assert_eq!(node.get("/readyz").await.status(), 200, "the store answers over TLS");
    let pool = reqwest::Client::new().get(node.url("/v1/admin/pool")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(pool.status(), 200);
    let lease = node
        .app
        .pool
        .acquire(&shop(), &VisitorId::new("v-tls").unwrap(), &SessionAttrs::default(), T0)
        .await
        .expect("a lease over TLS");
    assert!(matches!(lease, callpool_pool::Grant::Leased { .. }), "{lease:?}");
    node.stop().await;

    let said = start_fails(tls_config(&store("127.0.0.1", "other.crt", true), "")).await;
    assert!(said.contains("the TLS connection to [store] redis_url failed"), "{said}");
    assert!(said.contains("UnknownIssuer"), "another CA signed the server's certificate: {said}");
    assert!(!said.contains("SECRET"), "{said}");

    let said = start_fails(tls_config(&store("localhost", "ca.crt", true), "")).await;
    assert!(said.contains("the TLS connection to [store] redis_url failed"), "{said}");
    assert!(said.contains("not valid for name \"localhost\""), "the certificate names 127.0.0.1 only: {said}");

    let said = start_fails(tls_config(&store("127.0.0.1", "ca.crt", false), "")).await;
    assert!(said.contains("the TLS connection to [store] redis_url failed"), "{said}");
    assert!(said.contains("CertificateRequired"), "Redis wants a client certificate: {said}");
}

/// A throw-away RabbitMQ (Debian's, run by its own script as the current user) that listens only
/// for TLS on 127.0.0.1:`port`, with `pki`'s server certificate, and wants a client certificate
/// `pki`'s CA signed.
struct OwnTlsRabbit {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl OwnTlsRabbit {
    fn start(port: u16, pki: &Pki) -> OwnTlsRabbit {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp = none\nlisteners.ssl.1 = 127.0.0.1:{port}\nssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                pki.path("ca.crt"),
                pki.path("server.crt"),
                pki.path("server.key")
            ),
        )
        .unwrap();
        std::fs::write(d.join("enabled_plugins"), "[].").unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let mut child = std::process::Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("RABBITMQ_NODENAME", format!("callpool-tls-{}-{nanos:x}@localhost", std::process::id()))
            .env("RABBITMQ_DIST_PORT", crate::common::free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_CONFIG_FILES", d.join("conf.d"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_CRASH_DUMP", d.join("erl_crash.dump"))
            // The script then runs the Erlang VM in its own place: a signal to this child stops the broker.
            .env("RUNNING_UNDER_SYSTEMD", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rabbitmq-server must be installed (./deploy/test.sh installs it)");
        for _ in 0..1200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return OwnTlsRabbit { child, _dir: dir };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("rabbitmq-server ended ({status}) before it listened on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("rabbitmq-server did not listen on {port} within 60 s");
    }
}

impl Drop for OwnTlsRabbit {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..300 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node joins the cluster bus over `amqps://`, trusting the CA of `amqp_ca_file` and presenting
/// its client certificate; with another CA the bus stays down (and the node unready) rather than
/// talking to a server it cannot verify, and without a client certificate the broker refuses it.
#[tokio::test]
async fn rabbitmq_over_tls_trusts_the_ca_file_and_presents_the_client_certificate() {
    use crate::common::{eventually, free_port, redis_url, Node};
    let pki = Pki::new();
    let port = free_port();
    let _rabbit = OwnTlsRabbit::start(port, &pki);
    let store =
        format!("[store]\nkind = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{}\"", redis_url(), unique("amqps"));
    let bus = |ca: &str, client: bool| {
        let mut b = format!(
            "[bus]\nkind = \"rabbitmq\"\namqp_url = \"amqps://guest:guest@127.0.0.1:{port}/%2f\"\namqp_ca_file = {:?}\n",
            pki.path(ca)
        );
        if client {
            b += &format!(
                "amqp_client_cert_file = {:?}\namqp_client_key_path = {:?}\n",
                pki.path("client.crt"),
                pki.path("client.key")
            );
        }
        b
    };

    let node = Node::start_real(tls_config(&store, &bus("ca.crt", true))).await;
    eventually("the bus is connected over TLS", || async { node.metric("callpool_bus_connected").await == 1.0 }).await;
    assert_eq!(node.get("/readyz").await.status(), 200);
    node.stop().await;

    for (ca, client, why) in
        [("other.crt", true, "a server certificate from another CA"), ("ca.crt", false, "no client certificate")]
    {
        let node = Node::start_real(tls_config(&store, &bus(ca, client))).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(node.metric("callpool_bus_connected").await, 0.0, "{why}");
        assert_eq!(node.get("/readyz").await.status(), 503, "{why}");
        node.stop().await;
    }
}

/// Every process a test starts, killed (SIGKILL) and reaped on drop, also when the test fails.
struct Procs {
    children: Vec<(u16, std::process::Child)>,
    dirs: Vec<tempfile::TempDir>,
}

impl Procs {
    /// `redis-server` with `args`, in a temporary directory of its own, answering on `port`.
    fn redis(&mut self, port: u16, args: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (./deploy/test.sh installs it)");
        self.children.push((port, child));
        self.dirs.push(dir);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server {args:?} did not start on port {port}");
    }

    /// A Redis node on `port` (no persistence), a replica of `primary` if given.
    fn node(&mut self, port: u16, primary: Option<u16>) {
        let port_text = port.to_string();
        let mut args = vec!["--port", &port_text, "--bind", "127.0.0.1", "--appendonly", "no", "--save", ""];
        let of = primary.map(|p| format!("127.0.0.1 {p}"));
        if let Some(of) = &of {
            args.extend(["--replicaof", of]);
        }
        self.redis(port, &args);
    }

    /// A sentinel on `port` watching `mymaster` at `primary` (quorum 2, down after 1 s); its
    /// configuration file is its own to rewrite.
    fn sentinel(&mut self, port: u16, primary: u16) {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        self.redis(port, &[conf.to_str().unwrap(), "--sentinel"]);
        self.dirs.push(dir);
    }

    /// Kills the process answering on `port` at once (no chance to write or hand over anything).
    fn kill(&mut self, port: u16) {
        let (_, child) = self.children.iter_mut().find(|(p, _)| *p == port).expect("a process on that port");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `args` on the Redis (or sentinel) at `port`, within a second; `None` if it did not answer.
async fn ask<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let asked = async {
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async::<T>(&mut c).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(1), asked).await.ok().flatten()
}

/// A failover under load: a primary, its replica and three sentinels; a node in sentinel mode
/// takes leases, keeps tabs open and stores calls; the replica's link is cut and the primary is
/// killed (SIGKILL) 300 ms later while calls keep arriving; the sentinels promote the replica and
/// the node follows it within a bounded time. What the asynchronous failover lost is counted and
/// printed: calls the node acknowledged (200) that the new primary does not have, and leases
/// granted before the kill that are gone; all of them from the 300 ms the replica was behind.
#[tokio::test]
async fn a_sentinel_failover_is_followed_and_what_it_lost_is_counted() {
    use crate::common::{free_port, Node, WsTab, ADMIN_TOKEN};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    const SECRET: &str = "office-secret-0123456789";

    let (a, b) = (free_port(), free_port());
    let sentinels = [free_port(), free_port(), free_port()];
    let mut procs = Procs { children: Vec::new(), dirs: Vec::new() };
    procs.node(a, None);
    procs.node(b, Some(a));
    let started = Instant::now();
    while ask::<String>(b, &["INFO", "replication"]).await.is_none_or(|i| !i.contains("master_link_status:up")) {
        assert!(started.elapsed() < Duration::from_secs(10), "the replica did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in sentinels {
        procs.sentinel(s, a);
    }
    // Each sentinel must know the replica and the two other sentinels (hello messages every 2 s)
    // before a failover can be agreed.
    let started = Instant::now();
    loop {
        let mut ready = true;
        for s in sentinels {
            let peers =
                ask::<Vec<redis::Value>>(s, &["SENTINEL", "SENTINELS", "mymaster"]).await.map_or(0, |v| v.len());
            let replicas =
                ask::<Vec<redis::Value>>(s, &["SENTINEL", "REPLICAS", "mymaster"]).await.map_or(0, |v| v.len());
            ready &= peers == 2 && replicas == 1;
        }
        if ready {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the sentinels did not find each other");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let setup = started.elapsed();

    let list: Vec<String> = sentinels.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let numbers: Vec<String> = (10..210).map(|i| format!("\"+7495123{i:04}\"")).collect();
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "redis"
redis_url = "redis://mymaster/0"
redis_prefix = "{prefix}"
redis_sentinels = [{list}]
redis_master_name = "mymaster"

[pool]
reaper_interval = "200ms"

[[pbx]]
id = "office"
secrets = ["{SECRET}"]

[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = [{numbers}]
max_numbers = 200
delay_to_show = "10ms"
reclaim_after_idle = "30m"
"#,
        prefix = unique("failover"),
        list = list.join(", "),
        numbers = numbers.join(", "),
    );
    let config = callpool::config::Config::parse(&text, "sentinel.toml", &std::collections::HashMap::new())
        .expect("the sentinel config");
    assert!(config.store.to_string().contains("primary \"mymaster\" of sentinels 127.0.0.1:"), "{}", config.store);
    let node = Arc::new(Node::start_real(config).await);
    assert_eq!(node.get("/readyz").await.status(), 200);

    // Two tabs with their tracking numbers, open across the failover.
    let mut tabs = Vec::new();
    for v in ["tab-1", "tab-2"] {
        let mut tab = WsTab::open(node.addr, "shop-public-key", "https://shop.example").await;
        tab.hello(v, "https://shop.example/").await;
        let _default = tab.number().await;
        let (number, kind) = tab.number().await;
        assert_eq!(kind, "tracking", "{number}");
        tabs.push(tab);
    }

    // Calls arrive every 20 ms and a new visitor takes a lease every 20 ms, from before the
    // kill until the end: what was acknowledged is written down.
    let stop = tokio_util::sync::CancellationToken::new();
    let acked_calls = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let refused_calls = Arc::new(Mutex::new(0usize));
    let leases = Arc::new(Mutex::new(Vec::<(VisitorId, String, Instant)>::new()));
    let refused_leases = Arc::new(Mutex::new(0usize));
    let load = {
        let (node, stop) = (node.clone(), stop.clone());
        let (acked_calls, refused_calls) = (acked_calls.clone(), refused_calls.clone());
        let (leases, refused_leases) = (leases.clone(), refused_leases.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
            let mut i = 0u32;
            while !stop.is_cancelled() {
                i += 1;
                let id = format!("fo-{i}");
                let body = serde_json::json!({
                    "call_id": id, "called": "+74951230010", "caller": "+79161234567",
                    "started_at": chrono::Utc::now().to_rfc3339(), "status": "ringing",
                })
                .to_string();
                let t = Ts::now().as_millis() / 1000;
                let sent = http
                    .post(node.url("/v1/pbx/calls?pbx=office"))
                    .header("content-type", "application/json")
                    .header("callpool-signature", callpool::pbx::signature::sign(SECRET, t, body.as_bytes()))
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked_calls.lock().unwrap().push((id, Instant::now())),
                    _ => *refused_calls.lock().unwrap() += 1,
                }
                let visitor = VisitorId::new(format!("v-{i}")).unwrap();
                match node.app.pool.acquire(&shop(), &visitor, &SessionAttrs::default(), Ts::now()).await {
                    Ok(callpool_pool::Grant::Leased { lease, .. }) => {
                        leases.lock().unwrap().push((visitor, lease.number.to_string(), Instant::now()))
                    }
                    _ => *refused_leases.lock().unwrap() += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = acked_calls.lock().unwrap().len();
    assert!(before_kill > 10, "calls were stored before the failover: {before_kill}");
    // The replica falls behind: its link is cut and it may not sync again (the primary refuses
    // it PSYNC), and the primary, still acknowledging writes, is killed 300 ms later.
    let cut_at = Instant::now();
    let refused = ["ACL", "SETUSER", "default", "-psync", "-sync", "-replconf"];
    assert_eq!(ask::<redis::Value>(a, &refused).await, Some(redis::Value::Okay));
    assert_eq!(ask::<i64>(a, &["CLIENT", "KILL", "TYPE", "replica"]).await, Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    procs.kill(a);

    // The sentinels promote the replica; the node follows it: ready again, calls and leases go
    // through again.
    let promoted = loop {
        if ask::<Vec<String>>(sentinels[0], &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .await
            .is_some_and(|addr| addr.get(1) == Some(&b.to_string()))
        {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(15), "the sentinels did not promote the replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ready = loop {
        let up = reqwest::get(node.url("/readyz")).await.is_ok_and(|r| r.status() == 200);
        let calls_after = acked_calls.lock().unwrap().iter().any(|(_, at)| at.duration_since(killed_at) > promoted);
        let leases_after = leases.lock().unwrap().iter().any(|(_, _, at)| at.duration_since(killed_at) > promoted);
        if up && calls_after && leases_after {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < promoted + Duration::from_secs(5), "the node did not follow the new primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    load.await.unwrap();
    let role = ask::<Vec<redis::Value>>(b, &["ROLE"]).await.unwrap();
    assert_eq!(role.first(), Some(&redis::Value::BulkString(b"master".to_vec())), "{role:?}");

    // What the failover lost: every acknowledged call should be in the new primary.
    let acked = acked_calls.lock().unwrap().clone();
    let mut lost_calls = Vec::new();
    for (id, _) in &acked {
        let key = CallKey::new("office", id).unwrap();
        if node.app.store.call(&key).await.expect("read a call").is_none() {
            lost_calls.push(id.clone());
        }
    }
    // Every lease granted before the kill: still held by its visitor, on the same number?
    let granted = leases.lock().unwrap().clone();
    let mut lost_leases = Vec::new();
    for (visitor, number, at) in granted.iter().filter(|l| l.2 < killed_at) {
        let now = node.app.pool.current(&shop(), visitor, Ts::now()).await.expect("read a lease");
        if now.is_none_or(|l| l.number.to_string() != *number) {
            lost_leases.push((visitor.to_string(), *at));
        }
    }
    let acked_in_gap = acked.iter().filter(|(_, at)| (cut_at..killed_at).contains(at)).count();
    let leased_in_gap = granted.iter().filter(|l| (cut_at..killed_at).contains(&l.2)).count();
    println!(
        "failover: set-up {setup:?}; promoted {promoted:?} after the kill, node ready with calls and leases \
         again {ready:?} after it; calls acknowledged {} ({before_kill} before the cut, {acked_in_gap} between \
         the cut and the kill), refused meanwhile {}, acknowledged but lost {}; leases granted {} \
         ({leased_in_gap} between the cut and the kill), refused meanwhile {}, lost {}",
        acked.len(),
        refused_calls.lock().unwrap(),
        lost_calls.len(),
        granted.len(),
        refused_leases.lock().unwrap(),
        lost_leases.len(),
    );
    assert!(ready < Duration::from_secs(12), "followed within a bounded time: {ready:?}");
    // Replication is asynchronous: what the primary acknowledged while the replica was behind
    // is gone, and nothing else.
    let acked_at: std::collections::HashMap<&str, Instant> = acked.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    assert!(lost_calls.iter().all(|id| acked_at[id.as_str()] >= cut_at), "lost before the cut: {lost_calls:?}");
    assert!(lost_leases.iter().all(|(_, at)| *at >= cut_at), "lost before the cut: {lost_leases:?}");
    // Calls acknowledged in the gap are lost (unless a busy machine let none through in it).
    assert!(lost_calls.len() <= acked_in_gap, "{lost_calls:?} of {acked_in_gap}");
    assert!(acked_in_gap == 0 || !lost_calls.is_empty(), "none of the {acked_in_gap} acknowledged in the gap was lost");
    Arc::try_unwrap(node).ok().expect("the load task ended").stop().await;
}
