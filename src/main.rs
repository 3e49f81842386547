//! The `tributary` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    tributary::cli::main()
}
