//! The journal in front of redb: what makes a group commit cheap without weakening what `OK`
//! means.
//!
//! A group of messages is written to the journal (`<store>-journal`) in one `write`, synced
//! with `--fsync always`, and only then committed to redb *non-durably* (in the process's
//! memory, visible to every reader; room messages wait in memory until something reads them or
//! the checkpoint, see [`super::embedded`]). Every [`CHECKPOINT_INTERVAL`], or once the journal holds
//! [`CHECKPOINT_BYTES`], one durable redb commit makes everything since the last on disk, and
//! the journal is emptied. So a message is acknowledged once it is in the journal: on disk
//! with `--fsync always`, in the operating system with `never`, exactly as before; and the cost
//! per group is one append (and one sync) instead of redb's copy-on-write commit of every page
//! it touched (and its two syncs).
//!
//! After a crash the journal holds every group acknowledged since the last checkpoint; opening
//! the store replays the messages whose ids lie past what redb has durably (ids are per
//! conversation and contiguous, so "past the last id" is exact and a replay twice changes
//! nothing), commits durably, and empties the journal.
//!
//! # Format
//!
//! A sequence of frames: `"TCJ1"` | payload length (u32 LE) | payload | the first 16 bytes of
//! the payload's SHA-256. A payload is a count (u32 LE) of entries, each: conversation length
//! (u16 LE) | conversation | id (u64 LE) | flags (1: bit 0 = kept for the recipient) | record
//! length (u32 LE) | record bytes ([`super::Record::encode`]).
//!
//! Only the last frame can be torn (a crash in the middle of the write that was never
//! acknowledged): it is dropped. A bad frame with more after it is damage, and stops startup.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;

/// How often at most the journal is folded into redb with a durable commit.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// A journal this large is folded into redb at the next group, whatever the time.
pub const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;

const MAGIC: &[u8; 4] = b"TCJ1";
const DIGEST_LEN: usize = 16;
/// The largest payload a frame may claim (a group is at most 4,096 messages of 64 KiB).
const MAX_PAYLOAD: usize = 4096 * (64 * 1024 + 512);

/// One message as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its conversation (see [`super::Record::conversation`]).
    pub conversation: String,
    /// Its id there.
    pub id: u64,
    /// Whether it is kept for its recipient (a direct message to a verified user).
    pub keep_for_recipient: bool,
    /// The record, encoded.
    pub record: Vec<u8>,
}

/// The header before a frame's payload: magic and payload length.
const HEADER: usize = 8;

/// A frame being built: entries appended one by one, then sealed when appended. Built in
/// place (header, count, entries), so sealing adds the digest and copies nothing.
#[derive(Debug)]
pub struct Frame {
    bytes: Vec<u8>,
    count: u32,
}

impl Default for Frame {
    fn default() -> Self {
        let mut bytes = MAGIC.to_vec();
        // The payload's length and its count of entries, filled in when sealed.
        bytes.extend_from_slice(&[0; HEADER - MAGIC.len() + 4]);
        Self { bytes, count: 0 }
    }
}

impl Frame {
    /// Adds one message.
    pub fn push(&mut self, conversation: &str, id: u64, keep_for_recipient: bool, record: &[u8]) {
        let len = u16::try_from(conversation.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes
            .extend_from_slice(&conversation.as_bytes()[..usize::from(len)]);
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.bytes.push(u8::from(keep_for_recipient));
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    /// The frame's bytes, header and digest included.
    fn seal(&mut self) -> &[u8] {
        let payload_len = u32::try_from(self.bytes.len() - HEADER).unwrap_or(u32::MAX);
        self.bytes[4..HEADER].copy_from_slice(&payload_len.to_le_bytes());
        self.bytes[HEADER..HEADER + 4].copy_from_slice(&self.count.to_le_bytes());
        let sum = digest::digest(&digest::SHA256, &self.bytes[HEADER..]);
        self.bytes.extend_from_slice(&sum.as_ref()[..DIGEST_LEN]);
        &self.bytes
    }
}

/// Why a journal could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Reading failed.
    Io(io::Error),
    /// A bad frame with more after it, at this offset.
    Damaged(u64),
}

/// The open journal.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Whether every append is synced to disk (`--fsync always`).
    sync: bool,
    /// Bytes in it (all of them frames that were written whole).
    len: u64,
    /// When it was last emptied.
    emptied: Instant,
}

impl Wal {
    /// The journal of the store at `store`.
    pub fn path_for(store: &Path) -> PathBuf {
        let mut path = store.as_os_str().to_owned();
        path.push("-journal");
        PathBuf::from(path)
    }

    /// Opens (or makes, mode 0600) the journal at `path` and reads what it holds; a torn last
    /// frame is cut off. With `sync`, every append and emptying is synced to disk.
    pub fn open(path: &Path, sync: bool) -> Result<(Self, Vec<Entry>), ReadError> {
        let mut options = OpenOptions::new();
        // Appending: every write goes to the end, wherever a read left the offset.
        options.read(true).append(true).create(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(ReadError::Io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(ReadError::Io)?;
        let (entries, good) = parse(&bytes)?;
        if good < bytes.len() as u64 {
            tracing::warn!(journal = %path.display(), dropped = bytes.len() as u64 - good,
                "the journal ends in a torn write (never acknowledged): dropped");
            file.set_len(good).map_err(ReadError::Io)?;
        }
        Ok((
            Self {
                file,
                path: path.to_owned(),
                sync,
                len: good,
                emptied: Instant::now(),
            },
            entries,
        ))
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `frame` in one write (and syncs it with `--fsync always`). On failure the journal
    /// is cut back to where it was, so a failed group leaves nothing behind.
    pub fn append(&mut self, mut frame: Frame) -> io::Result<()> {
        let bytes = frame.seal();
        let result = (|| {
            (&self.file).write_all(bytes)?;
            if self.sync {
                self.file.sync_data()?;
            }
            Ok(())
        })();
        let written = bytes.len() as u64;
        match result {
            Ok(()) => {
                self.len += written;
                Ok(())
            }
            Err(err) => {
                self.cut_back(self.len);
                Err(err)
            }
        }
    }

    /// Takes the last frame back off (its group could not be committed after all).
    pub fn undo_to(&mut self, len: u64) {
        self.cut_back(len);
    }

    /// Bytes in the journal now.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds nothing (everything is in redb for good).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether everything in it should now be folded into redb.
    pub fn checkpoint_due(&self) -> bool {
        !self.is_empty()
            && (self.len >= CHECKPOINT_BYTES || self.emptied.elapsed() >= CHECKPOINT_INTERVAL)
    }

    /// Empties the journal: everything in it is durably in redb.
    pub fn empty(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        if self.sync {
            self.file.sync_data()?;
        }
        self.len = 0;
        self.emptied = Instant::now();
        Ok(())
    }

    /// Rereads what the journal holds (to replay it after the database was reopened).
    pub fn entries(&self) -> Result<Vec<Entry>, ReadError> {
        let mut bytes = Vec::new();
        let mut file = &self.file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(0)).map_err(ReadError::Io)?;
        file.take(self.len)
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
        Ok(parse(&bytes)?.0)
    }

    fn cut_back(&mut self, len: u64) {
        match self.file.set_len(len) {
            Ok(()) => self.len = len,
            Err(err) => {
                // The next append would follow half a frame: what was appended is unreadable
                // past it, so say so loudly; startup refuses the journal rather than guess.
                tracing::error!(journal = %self.path.display(), error = %err,
                    "cannot cut the journal back after a failed write");
            }
        }
    }
}

/// The entries of every whole frame in `bytes`, and how many bytes those frames take. A bad
/// frame at the end is a torn write; one with more after it is damage.
fn parse(bytes: &[u8]) -> Result<(Vec<Entry>, u64), ReadError> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let frame = &bytes[at..];
        if frame.len() < HEADER {
            // Not even a whole header: the end of a write cut short.
            return Ok((entries, at as u64));
        }
        // A write cut short leaves a prefix of a frame, so its header is whole and right:
        // a wrong one is damage.
        let Some(len) = frame_len(frame) else {
            return Err(ReadError::Damaged(at as u64));
        };
        let total = HEADER + len + DIGEST_LEN;
        if frame.len() < total {
            return torn_or_damaged(bytes, at, frame.len(), entries);
        }
        let payload = &frame[HEADER..HEADER + len];
        let sum = &frame[HEADER + len..total];
        if digest::digest(&digest::SHA256, payload).as_ref()[..DIGEST_LEN] != *sum {
            return torn_or_damaged(bytes, at, total, entries);
        }
        match parse_payload(payload) {
            Some(more) => entries.extend(more),
            None => return Err(ReadError::Damaged(at as u64)),
        }
        at += total;
    }
    Ok((entries, at as u64))
}

/// A frame's payload length from its (whole) header, if the header is sane.
fn frame_len(frame: &[u8]) -> Option<usize> {
    if &frame[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(frame[4..8].try_into().ok()?) as usize;
    (len <= MAX_PAYLOAD).then_some(len)
}

/// A bad frame at `at`, `span` bytes long: the torn end of the journal when nothing follows it
/// (everything before it stands), damage otherwise.
fn torn_or_damaged(
    bytes: &[u8],
    at: usize,
    span: usize,
    entries: Vec<Entry>,
) -> Result<(Vec<Entry>, u64), ReadError> {
    if at + span >= bytes.len() {
        Ok((entries, at as u64))
    } else {
        Err(ReadError::Damaged(at as u64))
    }
}

fn parse_payload(mut payload: &[u8]) -> Option<Vec<Entry>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    let count = u32::from_le_bytes(take(&mut payload, 4)?.try_into().ok()?);
    let mut entries = Vec::with_capacity(count.min(4096) as usize);
    for _ in 0..count {
        let len = u16::from_le_bytes(take(&mut payload, 2)?.try_into().ok()?);
        let conversation = std::str::from_utf8(take(&mut payload, usize::from(len))?).ok()?;
        let id = u64::from_le_bytes(take(&mut payload, 8)?.try_into().ok()?);
        let flags = take(&mut payload, 1)?[0];
        let len = u32::from_le_bytes(take(&mut payload, 4)?.try_into().ok()?) as usize;
        let record = take(&mut payload, len)?.to_vec();
        entries.push(Entry {
            conversation: conversation.to_owned(),
            id,
            keep_for_recipient: flags & 1 != 0,
            record,
        });
    }
    payload.is_empty().then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(entries: &[(&str, u64)]) -> Frame {
        let mut frame = Frame::default();
        for (conversation, id) in entries {
            frame.push(
                conversation,
                *id,
                *id % 2 == 0,
                format!("record {id}").as_bytes(),
            );
        }
        frame
    }

    #[test]
    fn frames_come_back_and_a_torn_end_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut wal, entries) = Wal::open(&path, false).unwrap();
        assert!(entries.is_empty());
        wal.append(frame(&[("#a", 1), ("alice bob", 1)])).unwrap();
        wal.append(frame(&[("#a", 2)])).unwrap();
        let whole = wal.len();
        drop(wal);
        // A crash in the middle of a third write.
        let mut torn = frame(&[("#a", 3)]).seal().to_vec();
        torn.truncate(torn.len() - 5);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        let (wal, entries) = Wal::open(&path, false).unwrap();
        let ids: Vec<_> = entries
            .iter()
            .map(|e| (e.conversation.as_str(), e.id))
            .collect();
        assert_eq!(ids, [("#a", 1), ("alice bob", 1), ("#a", 2)]);
        assert_eq!(entries[1].record, b"record 1");
        assert!(!entries[1].keep_for_recipient && entries[2].keep_for_recipient);
        assert_eq!(wal.len(), whole, "the torn frame was cut off");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        assert_eq!(wal.entries().unwrap(), entries);
    }

    #[test]
    fn damage_before_the_end_is_refused_and_emptying_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut wal, _) = Wal::open(&path, true).unwrap();
        wal.append(frame(&[("#a", 1)])).unwrap();
        wal.append(frame(&[("#a", 2)])).unwrap();
        drop(wal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 0xff; // inside the first frame's payload
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Wal::open(&path, false),
            Err(ReadError::Damaged(0))
        ));
        // A wrong header with nothing after it is damage too: a cut write keeps its header.
        let mut bad_header = frame(&[("#a", 1)]).seal().to_vec();
        bad_header[0] = b'X';
        std::fs::write(&path, &bad_header).unwrap();
        assert!(matches!(
            Wal::open(&path, false),
            Err(ReadError::Damaged(0))
        ));
        std::fs::write(&path, b"").unwrap();
        let (mut wal, _) = Wal::open(&path, false).unwrap();
        wal.append(frame(&[("#a", 3)])).unwrap();
        assert!(!wal.is_empty() && !wal.checkpoint_due());
        wal.empty().unwrap();
        assert_eq!(wal.len(), 0);
        assert!(wal.entries().unwrap().is_empty());
        wal.append(frame(&[("#a", 4)])).unwrap();
        assert_eq!(wal.entries().unwrap()[0].id, 4);
    }
}
