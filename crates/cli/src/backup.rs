//! `tempora backup FILE`: save a consistent copy of a running server's SQLite store.
//!
//! The server writes the copy (SQLite's `VACUUM INTO`, one read snapshot, writes go on) and
//! streams it; this command saves it to `FILE.partial` (mode 0600: it holds every job, secret
//! names and token hashes), syncs it, checks it is a whole SQLite file and renames it to
//! `FILE`. Restoring is copying it back as `<data-dir>/tempora.db` while the server is stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use crate::ClientOpts;
use crate::client::{Api, Res, causes, fail};

/// Arguments of `tempora backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy (an SQLite database file).
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Run `tempora backup`.
pub async fn backup(args: BackupArgs, opts: ClientOpts) -> Res<()> {
    if args.file.is_dir() {
        return Err(fail(
            2,
            format!(
                "{} is a directory; name the file to write",
                args.file.display()
            ),
        ));
    }
    if args.file.exists() && !args.force {
        return Err(fail(
            2,
            format!(
                "{} exists; remove it or pass --force to replace it",
                args.file.display()
            ),
        ));
    }
    let api = Api::new(&opts)?;
    let resp = api.backup().await?;
    let expected = resp.content_length();
    let partial = partial_path(&args.file);
    let mut out = crate::client::create_new_private(&partial)?;
    let result = async {
        let mut written = 0u64;
        let mut head: Vec<u8> = Vec::with_capacity(16);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| fail(4, format!("the download broke off: {}", causes(&e))))?;
            if head.len() < 16 {
                head.extend(chunk.iter().take(16 - head.len()));
            }
            out.write_all(&chunk)
                .map_err(|e| fail(2, format!("cannot write {}: {e}", partial.display())))?;
            written += chunk.len() as u64;
        }
        out.sync_all()
            .map_err(|e| fail(2, format!("cannot sync {}: {e}", partial.display())))?;
        if expected.is_some_and(|n| n != written) || head.as_slice() != SQLITE_MAGIC {
            return Err(fail(
                1,
                "the server sent an incomplete or invalid backup; nothing was saved",
            ));
        }
        Ok(written)
    }
    .await;
    let written = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&partial, &args.file) {
        let _ = std::fs::remove_file(&partial);
        return Err(fail(
            2,
            format!("cannot rename to {}: {e}", args.file.display()),
        ));
    }
    eprintln!("backup saved to {} ({written} bytes)", args.file.display());
    Ok(())
}

/// `FILE.partial`, beside FILE (so that the rename stays on one filesystem).
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    file.with_file_name(name)
}
