//! `callpool check-config`: the configuration is loaded and validated before any command runs;
//! this one prints what it understood.

use callpool::config::Config;

/// Prints a summary of a valid configuration.
pub fn print_summary(config: &Config) {
    println!("{}: OK", config.source);
    println!("  listen {}; store {}; bus {}", config.server.listen, config.store, config.bus);
    println!(
        "  shared inventory: {} numbers; history kept {}",
        config.pool.numbers.len(),
        humantime::format_duration(config.pool.history)
    );
    for s in &config.sites {
        println!(
            "  site {}: {} dedicated, max {}, delay {}, idle {}, hold {}, cooldown {}, {}",
            s.id,
            s.numbers.len(),
            s.rules.max_numbers,
            humantime::format_duration(s.delay_to_show),
            humantime::format_duration(s.rules.reclaim_after_idle),
            humantime::format_duration(s.rules.max_hold),
            humantime::format_duration(s.rules.cooldown),
            s.timezone
        );
        if let Some(cb) = &s.callback {
            let now = callpool_pool::Ts::now();
            let hours = if cb.hours.is_open(now) {
                "open now".to_owned()
            } else {
                match cb.hours.next_open(now).and_then(callpool_pool::Ts::to_chrono) {
                    Some(t) => {
                        format!("closed now, opens {}", t.with_timezone(&s.timezone).format("%Y-%m-%d %H:%M %Z"))
                    }
                    None => "never open (no hours on any day)".to_owned(),
                }
            };
            let windows = |w: &[callpool::callback::limits::Window]| {
                w.iter()
                    .map(|w| format!("{}/{}", w.count, humantime::format_duration(w.period)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "    callback: {} trigger, outcomes from pbx {}, {}, {hours}; per number {}, per site {}",
                cb.trigger.name(),
                cb.pbx,
                match cb.operators.as_slice() {
                    [one] => format!("operator {one}"),
                    many => format!(
                        "operators {} ({}, {} s each)",
                        many.join(", "),
                        if cb.hunt == callpool::config::Hunt::All { "all at once" } else { "in turn" },
                        cb.ring_for.as_secs()
                    ),
                },
                windows(&cb.limits.per_number),
                windows(&cb.limits.per_site),
            );
        }
    }
    if config.server.admin_token.is_none() {
        println!("  note: no admin token; the admin API refuses every request (set CALLPOOL_ADMIN_TOKEN)");
    }
}
