//! The `tributary` binary: everything lives in the library.

/// A sync parses, maps and serializes many small JSON values; with glibc's allocator a
/// third of a sync's CPU went to `malloc`/`free` (BENCHMARKS.md). Its `no_thp` feature
/// (Cargo.toml) keeps it from backing arenas with transparent huge pages, which made a
/// sync's resident memory about twice what it allocates.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tributary::cli::main()
}
