use chrono::Utc;
use kuma_model::{MeshSpec, ResourceKey, Spec};
use openraft::CommittedLeaderId;

use super::*;
use crate::command::{Command, Op, RequestId};
use crate::types::LogId;

/// A replica holding `meshes` meshes, applied up to index 42 of term 3.
pub(crate) fn image_with(meshes: u64) -> ReplicaImage {
    let mut state = ReplicaState::default();
    let mut events = Vec::new();
    for seq in 0..meshes {
        let name = format!("mesh-{seq}");
        state.apply(
            &Command {
                request_id: RequestId { origin: 7, seq },
                at: Utc::now(),
                ops: vec![Op::create(ResourceKey::mesh(&name), &Spec::Mesh(MeshSpec::default()))],
            },
            &mut events,
        );
    }
    state.cluster_id = Some("old-cluster".to_string());
    state.applied = Some(LogId::new(CommittedLeaderId::new(3, 1), 42));
    state.image()
}

fn must_file(meshes: u64) -> Vec<u8> {
    SnapshotFile::of_image(&image_with(meshes), 2, Utc::now()).unwrap().to_bytes()
}

/// The header line's text, for tests that edit it.
fn header_line(bytes: &[u8]) -> (usize, usize) {
    let first = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let second = first + bytes[first..].iter().position(|b| *b == b'\n').unwrap();
    (first, second)
}

#[test]
fn a_saved_file_reads_back_with_the_log_position_and_resource_count_in_its_header() {
    let bytes = must_file(5);
    assert!(bytes.starts_with(b"kuma-raft-snapshot v1\n{"), "{}", String::from_utf8_lossy(&bytes));
    let file = SnapshotFile::from_bytes(&bytes).unwrap();
    let header = file.header();
    assert_eq!((header.index, header.term, header.resources), (42, 3, 5));
    assert_eq!((header.taken_on, header.cluster_id.as_deref()), (2, Some("old-cluster")));
    assert_eq!(header.sha256.len(), 64);
    assert_eq!(file.to_bytes(), bytes, "reading and writing again gives the same bytes");
    assert_eq!(file.image().unwrap().resources.len(), 5);
}

#[test]
fn a_flipped_byte_in_the_data_fails_the_checksum() {
    let mut bytes = must_file(3);
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    let err = SnapshotFile::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err, SnapshotFileError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match its checksum"), "{err}");
}

#[test]
fn a_file_cut_anywhere_is_refused_and_says_how() {
    let bytes = must_file(3);
    let (header_start, header_end) = header_line(&bytes);
    for cut in [0, 5, header_start + 3, header_end, header_end + 1, bytes.len() - 1] {
        let err = SnapshotFile::from_bytes(&bytes[..cut]).unwrap_err();
        let expected = if cut < header_start {
            matches!(err, SnapshotFileError::NotASnapshot)
        } else if cut <= header_end {
            matches!(err, SnapshotFileError::BadHeader { .. })
        } else {
            matches!(err, SnapshotFileError::Truncated { .. })
        };
        assert!(expected, "cut at {cut}: {err}");
    }
    let err = SnapshotFile::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(err.to_string().starts_with("the snapshot is truncated"), "{err}");
}

#[test]
fn bytes_past_the_announced_length_are_refused() {
    let mut bytes = must_file(1);
    bytes.extend_from_slice(b"more");
    let err = SnapshotFile::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, SnapshotFileError::TooLong { expected, actual } if actual == expected + 4)
    );
}

#[test]
fn a_header_edited_to_another_log_position_is_refused() {
    let bytes = must_file(2);
    let (start, end) = header_line(&bytes);
    let header = String::from_utf8(bytes[start..end].to_vec()).unwrap();
    let edited = header.replace("\"index\":42", "\"index\":4200");
    assert_ne!(header, edited);
    let mut tampered = bytes[..start].to_vec();
    tampered.extend_from_slice(edited.as_bytes());
    tampered.extend_from_slice(&bytes[end..]);
    let err = SnapshotFile::from_bytes(&tampered).unwrap_err();
    assert!(matches!(&err, SnapshotFileError::Inconsistent { field: "index", .. }), "{err}");
}

#[test]
fn another_format_or_version_is_refused_before_anything_else_is_read() {
    let err = SnapshotFile::from_bytes(b"{\"not\": \"a snapshot\"}\n").unwrap_err();
    assert!(matches!(err, SnapshotFileError::NotASnapshot), "{err}");
    let err = SnapshotFile::from_bytes(b"kuma-raft-snapshot v2\n{}\n").unwrap_err();
    assert!(matches!(&err, SnapshotFileError::UnsupportedVersion { version } if version == "2"));
    assert!(err.to_string().contains("reads version 1"), "{err}");
}

#[test]
fn a_replica_that_applied_nothing_gives_no_snapshot() {
    let image = ReplicaState::default().image();
    let err = SnapshotFile::of_image(&image, 1, Utc::now()).unwrap_err();
    assert!(matches!(err, BackupError::Empty { peer: 1 }) && err.is_retryable(), "{err}");
}

/// `kumactl raft snapshot save` is now encoded in one pass from a view of the replica (outside its
/// lock), not through `serde_json::Value`s under it: the same document, read back the same way.
#[test]
fn a_file_encoded_from_a_view_holds_what_the_image_did() {
    let image = image_with(6);
    let state = ReplicaState::from_image(image).unwrap();
    let from_view = SnapshotFile::of_view(&state.view(), 2, Utc::now()).unwrap();
    let read = SnapshotFile::from_bytes(&from_view.to_bytes()).unwrap();
    assert_eq!((read.header().index, read.header().term), (42, 3));
    assert_eq!(read.header().resources, 6);
    assert_eq!(read.header().cluster_id.as_deref(), Some("old-cluster"));
    let as_image = |file: &SnapshotFile| serde_json::to_value(file.image().unwrap()).unwrap();
    let old_way = SnapshotFile::of_image(&state.image(), 2, Utc::now()).unwrap();
    assert_eq!(as_image(&read), as_image(&old_way));
}
