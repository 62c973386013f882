//! Where the service reads the time. The pool's rules never read a clock; the service hands
//! them `clock.now()`, so tests can drive time with a [`ManualClock`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use callpool_pool::Ts;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Ts;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Ts {
        Ts::now()
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Ts) -> ManualClock {
        ManualClock(AtomicI64::new(start.as_millis()))
    }

    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, t: Ts) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Ts {
        Ts::from_millis(self.0.load(Ordering::SeqCst))
    }
}
