//! The Docker engine for container-job tests: the local test image (no registry is reachable
//! here, so nothing is pulled) and the containers a test's runs left, found by their labels.
//! A missing engine or image is a failure, never a skip.

use std::process::Command;

/// The image `scripts/test-image.sh` builds: `FROM scratch` with Debian's busybox-static.
pub const TEST_IMAGE: &str = "tempora-test/busybox:1";

/// [`TEST_IMAGE`], after checking that the engine has it.
pub fn test_image() -> &'static str {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", TEST_IMAGE])
        .output();
    match out {
        Ok(o) if o.status.success() => TEST_IMAGE,
        Ok(o) => panic!(
            "the Docker engine has no image {TEST_IMAGE}: run scripts/test-image.sh (scripts/test.sh \
             and .ci/run do); this is a failure, not a skip: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run `docker` ({e}): the container-job tests need the Docker CLI and engine; \
             this is a failure, not a skip"
        ),
    }
}

/// Ids of the containers (running or not) whose labels match every one of `labels`
/// (`key=value`).
pub fn containers(labels: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["ps", "-aq", "--no-trunc"]);
    for l in labels {
        cmd.args(["--filter", &format!("label={l}")]);
    }
    let out = cmd.output().expect("docker ps");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
