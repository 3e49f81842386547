//! The built binary as an operator runs it, in a working directory of its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A working directory with its own SQLite store, and the built binary run in it (the
/// repository's configuration, no run-time connectors, a master key generated beside
/// the store; the operator is `ops`).
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("tributary.db")
    }

    /// The URL of the store the commands use.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.db().display())
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("TRIBUTARY_CONFIG", repo.join("config"))
            .env("TRIBUTARY_DATABASE_URL", self.url())
            .env("USER", "ops")
            .env_remove("TRIBUTARY_MASTER_KEY_FILE")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("TRIBUTARY_CONNECTORS");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs with `input` on stdin; the command may stop reading early.
    pub fn with_stdin(&self, args: &[&str], input: impl AsRef<[u8]>) -> Output {
        let mut child =
            self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.as_ref().to_vec();
        let writer = std::thread::spawn(move || {
            // A broken pipe is the point when the command refuses a huge input.
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }
}
