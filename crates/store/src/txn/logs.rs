//! A run's output: appending under the size bound (the oldest bytes go first) and cutting a
//! slice out of the stored chunks. Output is stored as chunks keyed by their offset in the
//! run's whole output stream; `log_size` is the stream's length and `log_dropped` the offset
//! before which bytes were dropped.

use tempora_core::run::RunState;

use crate::{LogSlice, StoreError};

/// A chunk of output: (offset in the stream, bytes).
pub type Chunk = (i64, Vec<u8>);

/// The steps of the output scripts, in a backend.
#[allow(async_fn_in_trait)] // used generically within the workspace, with concrete backends
pub trait LogSteps {
    /// The backend's error type.
    type Error: From<StoreError>;

    /// (`log_size`, `log_dropped`) of a run (locked for the append where the backend locks
    /// rows); `None` when the run does not exist.
    async fn log_bounds(&self, run_id: i64) -> Result<Option<(i64, i64)>, Self::Error>;
    /// The run's state with its bounds, for a read.
    async fn log_state(&self, run_id: i64) -> Result<Option<(String, i64, i64)>, Self::Error>;
    /// Store a chunk at `offset`.
    async fn insert_chunk(&self, run_id: i64, offset: i64, data: &[u8]) -> Result<(), Self::Error>;
    /// The run's first stored chunk.
    async fn first_chunk(&self, run_id: i64) -> Result<Option<Chunk>, Self::Error>;
    /// Delete the chunk at `offset`.
    async fn delete_chunk(&self, run_id: i64, offset: i64) -> Result<(), Self::Error>;
    /// Record the run's new bounds.
    async fn set_log_bounds(&self, run_id: i64, size: i64, dropped: i64)
    -> Result<(), Self::Error>;
    /// The chunks that hold bytes from `start` up to `end` (the one `start` falls in first),
    /// by offset.
    async fn chunks(&self, run_id: i64, start: i64, end: i64) -> Result<Vec<Chunk>, Self::Error>;
}

/// Append `data` to a run's output, keeping at most `max` bytes: whole chunks are dropped from
/// the front until the rest fits, the last one trimmed. Nothing happens for a run that no
/// longer exists (deleted with its job).
pub async fn append_log<T: LogSteps>(
    tx: &T,
    run_id: i64,
    data: &[u8],
    max: u64,
) -> Result<(), T::Error> {
    if data.is_empty() {
        return Ok(());
    }
    let Some((size, mut dropped)) = tx.log_bounds(run_id).await? else {
        return Ok(());
    };
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    tx.insert_chunk(run_id, size, data).await?;
    let new_size = size + data.len() as i64;
    while new_size - dropped > max {
        let Some((off, bytes)) = tx.first_chunk(run_id).await? else {
            break;
        };
        let excess = new_size - dropped - max;
        tx.delete_chunk(run_id, off).await?;
        if (bytes.len() as i64) <= excess {
            dropped = off + bytes.len() as i64;
        } else {
            let keep = &bytes[usize::try_from(excess).unwrap_or(0)..];
            tx.insert_chunk(run_id, off + excess, keep).await?;
            dropped = off + excess;
        }
    }
    tx.set_log_bounds(run_id, new_size, dropped).await
}

/// Up to `max` bytes of a run's output from `offset` (or from the oldest kept byte when
/// `offset` was dropped); `None` when the run does not exist.
pub async fn read_log<T: LogSteps>(
    tx: &T,
    run_id: i64,
    offset: u64,
    max: usize,
) -> Result<Option<LogSlice>, T::Error> {
    let Some((state, size, dropped)) = tx.log_state(run_id).await? else {
        return Ok(None);
    };
    let state: RunState = state
        .parse()
        .map_err(|e: tempora_core::run::UnknownName| StoreError::Backend(e.to_string()))?;
    let start = i64::try_from(offset)
        .unwrap_or(i64::MAX)
        .max(dropped)
        .min(size);
    let end = start.saturating_add(i64::try_from(max).unwrap_or(i64::MAX));
    let chunks = tx.chunks(run_id, start, end).await?;
    Ok(Some(slice(&chunks, start, max, offset, dropped, state)))
}

/// Cut at most `max` bytes from `start` out of `chunks` (by offset; the first may begin
/// before `start`).
pub fn slice(
    chunks: &[Chunk],
    start: i64,
    max: usize,
    requested: u64,
    dropped: i64,
    state: RunState,
) -> LogSlice {
    let mut data = Vec::new();
    for (off, bytes) in chunks {
        let chunk_end = off + bytes.len() as i64;
        if chunk_end <= start {
            continue;
        }
        let from = usize::try_from(start - off).unwrap_or(0);
        let room = max.saturating_sub(data.len());
        let take = (bytes.len() - from).min(room);
        data.extend_from_slice(&bytes[from..from + take]);
        if data.len() >= max {
            break;
        }
    }
    let start_u = u64::try_from(start).unwrap_or(0);
    LogSlice {
        next_offset: start_u + data.len() as u64,
        data,
        offset: start_u,
        dropped_before: u64::try_from(dropped)
            .unwrap_or(0)
            .saturating_sub(requested),
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_across_chunks_and_after_dropped_bytes() {
        let chunks: Vec<Chunk> = vec![(4, b"efgh".to_vec()), (8, b"ijkl".to_vec())];
        // Asked from 0 after 4 bytes were dropped: starts at 4, says 4 were lost.
        let s = slice(&chunks, 4, 6, 0, 4, RunState::Running);
        assert_eq!(
            (s.data.as_slice(), s.offset, s.next_offset, s.dropped_before),
            (&b"efghij"[..], 4, 10, 4)
        );
        // From the middle of the first chunk to the end.
        let s = slice(&chunks, 6, 100, 6, 4, RunState::Succeeded);
        assert_eq!(
            (s.data.as_slice(), s.next_offset, s.dropped_before),
            (&b"ghijkl"[..], 12, 0)
        );
        // At the end: nothing, the same offset again.
        let s = slice(&chunks, 12, 100, 12, 4, RunState::Succeeded);
        assert_eq!((s.data.len(), s.next_offset), (0, 12));
    }
}
