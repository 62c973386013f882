//! The pool-size advice: the simulator run on the site's own recorded traffic (`sim::fit`).

use crate::app::App;
use crate::config::SiteConfig;

/// A pool size as the simulator sees it on the site's own traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sized {
    pub numbers: u32,
    /// Share of calls attributed to the right visitor.
    pub accuracy: f64,
    /// Share attributed to the wrong one.
    pub wrong: f64,
}

/// The pool-size advice: the site's size now and the one that reaches 95% (at most 1% wrong),
/// on the site's last 28 days of recorded traffic.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolAdvice {
    Simulated {
        current: Sized,
        best: Sized,
        visits: usize,
        calls: usize,
    },
    /// Too little recorded traffic yet (the reason).
    NotYet(String),
    Failed,
}

/// Simulates the site's last 28 days of recorded traffic with other pool sizes.
pub async fn advice(app: &App, site: &SiteConfig) -> PoolAdvice {
    let now = app.clock.now();
    let from = now.minus(std::time::Duration::from_secs(28 * 86_400));
    let fitted = match crate::sim::fit::recorded(&app.store, site, from, now).await {
        Ok((fit, _)) => fit,
        Err(why) => return PoolAdvice::NotYet(why.to_string()),
    };
    let settings = crate::sim::fit::site_settings(site, &fitted);
    let model = fitted.model.clone();
    let run = tokio::task::spawn_blocking(move || crate::sim::fit::advice(&model, &settings, 0.95, 0.01)).await;
    let Ok((current, best)) = run else { return PoolAdvice::Failed };
    let sized =
        |p: &crate::sim::Point| Sized { numbers: p.settings.pool_size, accuracy: p.accuracy(), wrong: p.wrong() };
    PoolAdvice::Simulated { current: sized(&current), best: sized(&best), visits: fitted.visits, calls: fitted.calls }
}
