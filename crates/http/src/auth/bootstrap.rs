//! Making tokens, and the first admin token of a data directory or cluster.
//!
//! At start a server reads its admin token file (`<data-dir>/admin.token`, or
//! `--admin-token-file`):
//! - the file exists: it must be readable by its owner alone; its token is stored as the
//!   active token named `admin` unless its hash is known already (a token revoked by an admin
//!   stays revoked). A new token written to the file replaces the old `admin` token at the next
//!   start: that is how it is rotated by hand;
//! - the file does not exist and the store has never had a token: a new admin token is made,
//!   written to the file (mode 0600) and stored; the log says where the file is, never the
//!   token;
//! - the file does not exist and tokens exist (another node bootstrapped the cluster, or the
//!   file was deleted): nothing is written.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempora_core::auth::{Role, TOKEN_BYTES, token_from_bytes, token_hash};
use tempora_store::{NewToken, Store, StoreError};

/// Name of the token kept in the admin token file.
pub const ADMIN_TOKEN_NAME: &str = "admin";
/// Shortest token accepted from an operator's file.
pub const MIN_TOKEN_LEN: usize = 32;

/// Failures of token making and bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The system's random source failed.
    #[error("cannot get random bytes for a token: {0}")]
    Random(String),
    /// The token file is readable by others.
    #[error(
        "the token file {0} is readable by its group or others (mode {1:o}); make it 0600 (chmod 600)"
    )]
    Permissions(PathBuf, u32),
    /// The token file could not be read or written.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file holds no usable token.
    #[error("the token file {0} must hold one token of at least {MIN_TOKEN_LEN} characters")]
    Malformed(PathBuf),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`bootstrap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrapped {
    /// A new admin token was made and written to the file.
    Created(PathBuf),
    /// The file's token was stored (new, or replacing the previous `admin` token).
    Stored(PathBuf),
    /// The file's token was known already.
    Known(PathBuf),
    /// No file and tokens exist: nothing was done.
    Skipped(PathBuf),
}

/// A new token's secret text (256 random bits).
pub fn new_secret() -> Result<String, BootstrapError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| BootstrapError::Random(e.to_string()))?;
    Ok(token_from_bytes(&bytes))
}

/// A new token id (`tok_` and 12 random hex digits).
pub fn new_id() -> Result<String, BootstrapError> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| BootstrapError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("tok_{hex}"))
}

/// Read a token file, refusing one that its group or others can read.
pub fn read_token_file(path: &Path) -> Result<String, BootstrapError> {
    let io = |source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(BootstrapError::Permissions(path.to_owned(), mode));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || token.len() > 512 || token.contains(char::is_whitespace) {
        return Err(BootstrapError::Malformed(path.to_owned()));
    }
    Ok(token.to_owned())
}

/// Write `token` to a new file readable by its owner alone (its directory is created 0700).
pub fn write_token_file(path: &Path, token: &str) -> Result<(), BootstrapError> {
    let io = |source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn admin_token(secret: &str) -> Result<NewToken, BootstrapError> {
    Ok(NewToken {
        id: new_id()?,
        name: ADMIN_TOKEN_NAME.to_owned(),
        role: Role::Admin,
        hash: token_hash(secret),
        created_at: tempora_store::clock::now(),
        expires_at: None,
        created_by: None,
    })
}

/// Make sure the store has the admin token of `file` (see the module documentation).
pub async fn bootstrap(store: &dyn Store, file: &Path) -> Result<Bootstrapped, BootstrapError> {
    if file.exists() {
        let secret = read_token_file(file)?;
        let stored = store.ensure_token(admin_token(&secret)?).await?;
        return Ok(if stored {
            Bootstrapped::Stored(file.to_owned())
        } else {
            Bootstrapped::Known(file.to_owned())
        });
    }
    // Written under a temporary name first: a token stored but never written down would lock
    // everyone out, a file written for a token not stored is removed.
    let secret = new_secret()?;
    let pending = file.with_extension("token.new");
    let _ = std::fs::remove_file(&pending);
    write_token_file(&pending, &secret)?;
    match store.bootstrap_token(admin_token(&secret)?).await {
        Ok(true) => {
            std::fs::rename(&pending, file).map_err(|source| BootstrapError::Io {
                path: file.to_owned(),
                source,
            })?;
            Ok(Bootstrapped::Created(file.to_owned()))
        }
        Ok(false) => {
            let _ = std::fs::remove_file(&pending);
            Ok(Bootstrapped::Skipped(file.to_owned()))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            Err(e.into())
        }
    }
}
