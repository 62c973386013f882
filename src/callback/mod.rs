//! The callback widget's server side (in progress): so far the working-hours rules that decide
//! whether a callback is placed now or scheduled for the next opening time, and the reading of
//! the number a visitor leaves (region, validity, number type, blocklist).

pub mod hours;
pub mod number;
