//! The pool's integration tests in one test binary: the conformance suite on both stores, the
//! model-based property test, the Redis stress test and the embedded store's crash test.

mod common;

mod conformance;
mod crash;
mod model;
mod stress;
