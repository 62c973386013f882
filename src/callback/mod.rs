//! The callback widget's server side (issue in progress): so far the working-hours rules that
//! decide whether a callback is placed now or scheduled for the next opening time.

pub mod hours;
