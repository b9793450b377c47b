//! Records the build's git commit for `eventsift --version` and the status
//! page: `EVENTSIFT_GIT_COMMIT` when set (the container build passes it as
//! a build argument: `.git` is not in its context), else `git rev-parse`,
//! else "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=EVENTSIFT_GIT_COMMIT");
    let commit = match std::env::var("EVENTSIFT_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            // Rebuild when HEAD moves: HEAD itself, the branch it points
            // to, and the packed refs (only files that exist: a missing
            // one would rerun this script on every build).
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                let dir = Path::new(&dir);
                let mut watch = vec![dir.join("HEAD"), dir.join("packed-refs")];
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(dir.join(branch));
                }
                for f in watch.iter().filter(|f| f.exists()) {
                    println!("cargo:rerun-if-changed={}", f.display());
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=EVENTSIFT_GIT_COMMIT={commit}");
}
