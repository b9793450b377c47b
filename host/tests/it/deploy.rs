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

    // The eventsift services as docker-compose resolves them: health checks
    // through `eventsift health`, restart policies, start conditions, and
    // the admin listeners bound inside the network but not published.
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .arg("config")
        .output()
        .unwrap();
    let resolved = String::from_utf8_lossy(&out.stdout).into_owned();
    for (service, admin) in [("api", "0.0.0.0:5050"), ("writer", "0.0.0.0:5051")] {
        let block = service_block(&resolved, service);
        let admin_env = format!("EVENTSIFT_ADMIN_LISTEN: {admin}");
        for needed in [
            "restart: on-failure",
            "healthcheck:",
            "- eventsift\n      - health",
            "condition: service_healthy",
            admin_env.as_str(),
        ] {
            assert!(
                block.contains(needed),
                "{service} lacks {needed:?}:\n{block}"
            );
        }
        for port in ["5050", "5051"] {
            assert!(
                !block.contains(&format!("published: {port}")),
                "{service} publishes an admin port:\n{block}"
            );
        }
    }
}

/// The lines of `service` in `docker-compose config`'s output.
fn service_block(resolved: &str, service: &str) -> String {
    let head = format!("  {service}:");
    resolved
        .lines()
        .skip_while(|l| *l != head)
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with("    ") || l.is_empty())
        .map(|(_, l)| format!("{l}\n"))
        .collect()
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
    assert!(
        readme.lines().any(|l| l == "cargo xtask dist"),
        "README states the distribution build"
    );
    let run_steps: String = dockerfile
        .replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needed in [
        "RUN cargo xtask dist",
        "COPY --from=build /src/target/eventsift-dist/ /usr/local/",
        "ARG EVENTSIFT_GIT_COMMIT",
        "HEALTHCHECK",
        "CMD [\"eventsift\", \"health\"",
        "EXPOSE 5000",
    ] {
        assert!(
            run_steps.contains(needed),
            "the Dockerfile lacks {needed}: {run_steps}"
        );
    }
    assert!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("EXPOSE"))
            .all(|l| l.trim() == "EXPOSE 5000"),
        "only the public port is exposed"
    );
    assert!(
        dockerfile.contains("/var/lib/eventsift/plugins"),
        "plugins are baked in where the volume mounts"
    );
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l == ".git"),
        "the commit comes as a build argument because .git is not in the context"
    );
}
