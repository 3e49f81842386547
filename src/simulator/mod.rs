//! Faithful fake provider servers for tests, benchmarks and `tributary demo`.
