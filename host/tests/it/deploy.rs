//! The deployment files users run: the compose file is valid for Debian's
//! docker-compose, and the image builds the way the README says.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn compose_file_is_valid_and_has_the_deployment() {
    let compose = root().join("docker-compose.yml");
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .args(["config", "--services"])
        .output()
        .expect("docker-compose (Debian's package, installed by .ci/run) must be on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut services: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    services.sort();
    assert_eq!(services, ["api", "datanode", "kafka", "namenode", "writer"]);
    let quiet = Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .args(["config", "-q"])
        .status()
        .unwrap();
    assert!(quiet.success());
}

#[test]
fn dockerfile_builds_like_the_readme() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let build = "cargo xtask plugins && cargo build --release -p eventsift";
    assert!(
        readme.lines().any(|l| l == build),
        "README states the release build: {build}"
    );
    let run_steps: String = dockerfile
        .replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        run_steps.contains("RUN cargo xtask plugins && cargo build --release -p eventsift"),
        "{run_steps}"
    );
    assert!(
        dockerfile.contains("/var/lib/eventsift/plugins"),
        "plugins are baked in where the volume mounts"
    );
}
