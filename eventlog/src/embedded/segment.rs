//! One segment file: the record format, scanning a file on open, and reading one record back.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;

use super::io_err;
use crate::LogError;

/// Bytes before a record's key: `key_len | value_len | checksum`, each a `u32` LE.
pub(super) const HEADER: usize = 12;

/// A segment's file name: its base offset in 20 digits, so names sort like offsets.
pub(super) fn file_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// The base offset a segment file name stands for, if it is one.
pub(super) fn base_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn checksum(key: &[u8], value: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.iter().chain(value) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// One record as written to a segment.
pub(super) fn frame(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + key.len() + value.len());
    frame.extend_from_slice(&(key.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(value.len() as u32).to_le_bytes());
    frame.extend_from_slice(&checksum(key, value).to_le_bytes());
    frame.extend_from_slice(key);
    frame.extend_from_slice(value);
    frame
}

fn parse_record(bytes: &[u8], pos: usize) -> Option<(&[u8], &[u8], usize)> {
    let header = bytes.get(pos..pos + HEADER)?;
    let key_len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let value_len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let key_start = pos + HEADER;
    let value_start = key_start.checked_add(key_len)?;
    let end = value_start.checked_add(value_len)?;
    let key = bytes.get(key_start..value_start)?;
    let value = bytes.get(value_start..end)?;
    (checksum(key, value) == sum).then_some((key, value, end))
}

/// A segment file as found on open, its torn tail already cut off.
#[derive(Debug)]
pub(super) struct Scanned {
    /// The file, open for appending (used if this is the newest segment).
    pub(super) file: File,
    /// File position of each record, in order.
    pub(super) positions: Vec<u64>,
    /// The file's length after truncation.
    pub(super) len: u64,
    /// The file's last modification: when its newest record was written.
    pub(super) modified: SystemTime,
    /// When the file was created (its modification time where the file system does not say).
    pub(super) created: SystemTime,
}

/// Opens `path` (creating it empty if needed), hands every complete record to `each` in order,
/// and truncates an incomplete or corrupt tail (a write cut short by `kill -9`).
pub(super) fn scan(path: &Path, mut each: impl FnMut(&[u8], &[u8])) -> Result<Scanned, LogError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    let mut positions = Vec::new();
    let mut pos = 0usize;
    while let Some((key, value, next)) = parse_record(&bytes, pos) {
        positions.push(pos as u64);
        each(key, value);
        pos = next;
    }
    if pos < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            dropped_bytes = bytes.len() - pos,
            "truncating an incomplete record at the end of the log"
        );
        file.set_len(pos as u64).map_err(io_err(path))?;
    }
    let meta = file.metadata().map_err(io_err(path))?;
    let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
    Ok(Scanned {
        file,
        positions,
        len: pos as u64,
        modified,
        created: meta.created().unwrap_or(modified),
    })
}

/// Reads the record at file position `position` of the segment at `path`.
pub(super) fn read_at(path: &Path, position: u64) -> Result<(Bytes, Bytes), LogError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, position)
        .map_err(io_err(path))?;
    let key_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let value_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut body = vec![0u8; key_len + value_len];
    file.read_exact_at(&mut body, position + HEADER as u64)
        .map_err(io_err(path))?;
    let body = Bytes::from(body);
    Ok((body.slice(..key_len), body.slice(key_len..)))
}
