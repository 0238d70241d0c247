//! The Python tools of the notification tests: aiosmtpd (a real SMTP server) and the
//! `standardwebhooks` package (an independent signature verifier), in the venv `.ci/run`
//! makes at `<target dir>/notify-venv`, or the interpreter named by `NOTIFY_PYTHON`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The interpreter with both packages, or `None` (then the test skips, except under CI,
/// where a missing tool is a failure of the set-up, not a pass).
pub fn notify_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("NOTIFY_PYTHON").map(PathBuf::from),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map(|t| t.join("notify-venv/bin/python")),
    ];
    let found = candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import aiosmtpd, standardwebhooks"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the notification test tools are missing: .ci/run installs them (pip install aiosmtpd==1.4.6 standardwebhooks==1.1.0 into <target>/notify-venv)"
        );
        eprintln!(
            "\n*** SKIP: needs aiosmtpd and standardwebhooks (python3 -m venv v && v/bin/pip install aiosmtpd standardwebhooks; NOTIFY_PYTHON=v/bin/python) ***\n"
        );
    }
    found
}
