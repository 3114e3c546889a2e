//! Helpers shared by this crate's unit tests.

use proptest::test_runner::{Config, RngSeed};

/// A proptest configuration with a fixed seed, so every run explores the same cases.
pub(crate) fn proptest_config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x1260_7a11),
        ..Config::default()
    }
}
