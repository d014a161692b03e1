//! The worker's artifact cache: an artifact a run names (`sha256:<hex>`) is fetched from the
//! run source once, its hash checked, and kept as an executable file named by its digest in a
//! private directory; the least recently used ones go when the cache is over its size.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::source::RunSource;

/// A directory of fetched artifacts, bounded in bytes.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
    /// One fetch or eviction at a time (they are rare; runs of a cached artifact do not wait).
    lock: tokio::sync::Mutex<()>,
}

impl ArtifactCache {
    /// A cache in `dir` (made 0700 when missing; refused when another user owns it or others
    /// may write to it: a file planted there would run as a job) holding at most `max_bytes`.
    pub fn new(dir: &Path, max_bytes: u64) -> Result<ArtifactCache, String> {
        let what = |e: std::io::Error| format!("artifact cache {}: {e}", dir.display());
        if std::fs::symlink_metadata(dir).is_err() {
            std::fs::create_dir_all(dir).map_err(what)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(what)?;
        }
        // Not followed: a link planted at the path (say under /var/tmp) could point anywhere.
        let meta = std::fs::symlink_metadata(dir).map_err(what)?;
        let me = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "artifact cache {}: must be a directory (not a link) of this user that no one else                  may use (mode 0700)",
                dir.display()
            ));
        }
        Ok(ArtifactCache {
            dir: dir.to_owned(),
            max_bytes,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The path of artifact `reference`, fetched through `source` when not cached.
    pub async fn get(&self, source: &dyn RunSource, reference: &str) -> Result<PathBuf, String> {
        let hex = tempora_core::kind::artifact_digest(reference)
            .ok_or_else(|| format!("`{reference}` is not an artifact reference"))?
            .to_owned();
        let path = self.dir.join(&hex);
        if touch(&path) {
            return Ok(path);
        }
        let _guard = self.lock.lock().await;
        if touch(&path) {
            return Ok(path);
        }
        // Not ours as written (a link, another owner, other modes): fetched again.
        let _ = std::fs::remove_file(&path);
        let data = source
            .fetch_artifact(&hex)
            .await
            .map_err(|e| format!("cannot fetch artifact {reference}: {e}"))?
            .ok_or_else(|| format!("artifact {reference} is not stored on the server"))?;
        let got = tempora_core::auth::sha256_hex(&data);
        if got != hex {
            return Err(format!(
                "artifact {reference}: the bytes received hash to sha256:{got}; not run"
            ));
        }
        let tmp = self.dir.join(format!(".{hex}.{}", std::process::id()));
        let write = async {
            tokio::fs::write(&tmp, &data).await?;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(format!("cannot keep artifact {reference}: {e}"));
        }
        self.evict(&path);
        Ok(path)
    }

    /// Remove the least recently used artifacts (by modification time, which every use
    /// refreshes) until the cache fits, never `keep`.
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            // Only what this cache wrote: regular files named by a digest.
            .filter(|e| is_digest(&e.file_name().to_string_lossy()))
            .filter_map(|e| {
                let m = std::fs::symlink_metadata(e.path()).ok()?;
                m.is_file().then(|| {
                    (
                        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        m.len(),
                        e.path(),
                    )
                })
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, size, p) in files {
            if total <= self.max_bytes {
                break;
            }
            if p == keep {
                continue;
            }
            if std::fs::remove_file(&p).is_ok() {
                total = total.saturating_sub(size);
                tracing::info!(message = "artifact evicted from the cache", file = %p.display());
            }
        }
    }
}

/// 64 lowercase hex digits.
fn is_digest(name: &str) -> bool {
    tempora_core::kind::artifact_digest(&format!("sha256:{name}")).is_some()
}

/// Whether `path` is there as this cache wrote it (a regular file, not a link, of this user,
/// mode 0700); marks it used.
fn touch(path: &Path) -> bool {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !m.is_file() || m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o777 != 0o700 {
        return false;
    }
    match std::fs::File::options().append(true).open(path) {
        Ok(f) => {
            let _ = f.set_modified(SystemTime::now());
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use async_trait::async_trait;
    use tempora_store::{ClaimedRun, RunResult};

    use super::*;
    use crate::source::SourceError;

    /// A source that serves fixed bytes for each digest (not necessarily the right ones).
    struct Bytes(HashMap<String, Vec<u8>>);

    #[async_trait]
    impl RunSource for Bytes {
        fn worker_id(&self) -> &str {
            "t"
        }
        async fn claim(&self, _: usize) -> Result<Vec<ClaimedRun>, SourceError> {
            Ok(Vec::new())
        }
        async fn heartbeat(&self, _: &[i64]) -> Result<Vec<i64>, SourceError> {
            Ok(Vec::new())
        }
        async fn append_log(&self, _: i64, _: Vec<u8>) -> Result<(), SourceError> {
            Ok(())
        }
        async fn finish(&self, _: Vec<RunResult>) -> Result<(), SourceError> {
            Ok(())
        }
        async fn fetch_artifact(&self, sha: &str) -> Result<Option<Vec<u8>>, SourceError> {
            Ok(self.0.get(sha).cloned())
        }
    }

    fn sha(data: &[u8]) -> String {
        tempora_core::auth::sha256_hex(data)
    }

    #[tokio::test]
    async fn fetched_once_checked_and_the_least_recently_used_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(&dir.path().join("c"), 25).unwrap();
        let (a, b, c) = (vec![b'a'; 10], vec![b'b'; 10], vec![b'c'; 10]);
        let mut served = HashMap::new();
        for d in [&a, &b, &c] {
            served.insert(sha(d), d.clone());
        }
        // The wrong bytes for a digest: refused, nothing kept.
        let liar = "0".repeat(64);
        served.insert(liar.clone(), b"evil".to_vec());
        let src = Bytes(served);
        let err = cache
            .get(&src, &format!("sha256:{liar}"))
            .await
            .unwrap_err();
        assert!(err.contains("hash to sha256:"), "{err}");
        assert!(!dir.path().join("c").join(&liar).exists());
        let missing = format!("sha256:{}", "1".repeat(64));
        assert!(
            cache
                .get(&src, &missing)
                .await
                .unwrap_err()
                .contains("not stored")
        );

        let pa = cache
            .get(&src, &format!("sha256:{}", sha(&a)))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&pa).unwrap(), a);
        assert_eq!(
            std::fs::metadata(&pa).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache
            .get(&src, &format!("sha256:{}", sha(&b)))
            .await
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // `a` used again: `b` is now the least recently used.
        cache
            .get(&src, &format!("sha256:{}", sha(&a)))
            .await
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache
            .get(&src, &format!("sha256:{}", sha(&c)))
            .await
            .unwrap();
        assert!(pa.exists(), "the recently used one stays");
        assert!(
            !dir.path().join("c").join(sha(&b)).exists(),
            "the least recently used goes"
        );
    }

    #[tokio::test]
    async fn only_its_own_files_are_evicted_or_run() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c");
        let cache = ArtifactCache::new(&c, 1).unwrap();
        std::fs::write(c.join("notes.txt"), vec![b'n'; 100]).unwrap();
        let a = vec![b'a'; 10];
        let src = Bytes([(sha(&a), a.clone())].into());
        let reference = format!("sha256:{}", sha(&a));
        // A link planted under the digest is not run: the artifact is fetched again.
        let planted = dir.path().join("evil");
        std::fs::write(&planted, b"evil").unwrap();
        std::os::unix::fs::symlink(&planted, c.join(sha(&a))).unwrap();
        let p = cache.get(&src, &reference).await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), a);
        assert!(
            !std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            c.join("notes.txt").exists(),
            "a file that is not an artifact is never evicted"
        );
    }

    #[test]
    fn a_directory_others_may_use_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        for mode in [0o777, 0o755] {
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(ArtifactCache::new(&open, 1).unwrap_err().contains("0700"));
        }
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert!(
            ArtifactCache::new(&link, 1)
                .unwrap_err()
                .contains("not a link")
        );
        assert!(ArtifactCache::new(&private, 1).is_ok());
    }
}
