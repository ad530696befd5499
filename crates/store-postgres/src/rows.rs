//! Between rows and the model: key columns, resources and change events read from rows, and the
//! opaque page offset.

use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};
use kuma_store::{EventKind, Revision, StoreError, WatchEvent};
use tokio_postgres::Row;

/// The columns of a resource row, in the order every SELECT of one names them.
pub(crate) const RESOURCE_COLUMNS: &str =
    "type, mesh, name, version, spec, creation_time, modification_time";

/// The columns of a change row, in the order every SELECT of one names them.
pub(crate) const CHANGE_COLUMNS: &str =
    "revision, kind, type, mesh, name, version, spec, creation_time, modification_time";

/// The key columns `(type, mesh, name)` of a key; global types have mesh ''.
pub(crate) fn key_columns(key: &ResourceKey) -> (&'static str, &str, &str) {
    (key.resource_type.name(), key.mesh.as_deref().unwrap_or(""), &key.name)
}

fn internal(reason: String) -> StoreError {
    StoreError::Internal { reason }
}

/// Column `i` of `row`: a NULL or a type this schema never stores there is `Internal`, not a
/// panic.
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| internal(format!("column {i} of a stored row: {e}")))
}

pub(crate) fn key_from(
    type_name: &str,
    mesh: String,
    name: String,
) -> Result<ResourceKey, StoreError> {
    let resource_type = ResourceType::from_name(type_name)
        .ok_or_else(|| internal(format!("the database holds an unknown type {type_name:?}")))?;
    let mesh = resource_type.is_mesh_scoped().then_some(mesh);
    Ok(ResourceKey { resource_type, mesh, name })
}

/// A resource from the columns `type..modification_time` starting at `first`.
fn resource_at(row: &Row, first: usize) -> Result<Resource, StoreError> {
    let key = key_from(col(row, first)?, col(row, first + 1)?, col(row, first + 2)?)?;
    let version: i64 = col(row, first + 3)?;
    let spec_text: &str = col(row, first + 4)?;
    let spec = Spec::from_json_str(key.resource_type, spec_text)
        .map_err(|e| internal(format!("the stored spec of {key} does not read back: {e}")))?;
    Ok(Resource {
        key,
        spec,
        version: Version(version.to_string()),
        creation_time: col(row, first + 5)?,
        modification_time: col(row, first + 6)?,
    })
}

/// A resource from a row of `RESOURCE_COLUMNS`.
pub(crate) fn resource_from(row: &Row) -> Result<Resource, StoreError> {
    resource_at(row, 0)
}

/// A change event from a row of `CHANGE_COLUMNS`.
pub(crate) fn event_from(row: &Row) -> Result<WatchEvent, StoreError> {
    let revision: i64 = col(row, 0)?;
    let kind = match col::<&str>(row, 1)? {
        "created" => EventKind::Created,
        "updated" => EventKind::Updated,
        "deleted" => EventKind::Deleted,
        other => return Err(internal(format!("unknown change kind {other:?}"))),
    };
    let (resource, key) = if kind == EventKind::Deleted {
        (None, key_from(col(row, 2)?, col(row, 3)?, col(row, 4)?)?)
    } else {
        let resource = resource_at(row, 2)?;
        let key = resource.key.clone();
        (Some(std::sync::Arc::new(resource)), key)
    };
    Ok(WatchEvent { revision: Revision(revision as u64), kind, key, resource })
}

pub(crate) fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Created => "created",
        EventKind::Updated => "updated",
        EventKind::Deleted => "deleted",
    }
}

/// The version a client holds as the number stored in the `version` column; a version this store
/// never issued matches nothing.
pub(crate) fn version_number(version: &Version) -> Option<i64> {
    version.0.parse().ok()
}

const OFFSET_PREFIX: &str = "pg1.";

/// The page offset after `(mesh, name)`: opaque to clients, checked when it comes back.
pub(crate) fn encode_offset(mesh: &str, name: &str) -> String {
    format!("{OFFSET_PREFIX}{}.{}", hex(mesh), hex(name))
}

pub(crate) fn decode_offset(offset: &str) -> Result<(String, String), StoreError> {
    let invalid = || StoreError::Invalid {
        reason: format!("offset {offset:?} is not one this store issued"),
    };
    let rest = offset.strip_prefix(OFFSET_PREFIX).ok_or_else(invalid)?;
    let (mesh, name) = rest.split_once('.').ok_or_else(invalid)?;
    let mesh = unhex(mesh).ok_or_else(invalid)?;
    let name = unhex(name).ok_or_else(invalid)?;
    if name.is_empty() {
        return Err(invalid());
    }
    Ok((mesh, name))
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_reads_back_and_a_foreign_one_is_invalid() {
        let offset = encode_offset("mesh-1", "web/α.1");
        assert_eq!(decode_offset(&offset).unwrap(), ("mesh-1".into(), "web/α.1".into()));
        assert_eq!(decode_offset(&encode_offset("", "default")).unwrap().0, "");
        for bad in
            ["not an offset", "pg1.", "pg1.zz.00", "pg1.61.6", "pg1.61.", "default/a", "pg1.ff.61"]
        {
            assert!(matches!(decode_offset(bad), Err(StoreError::Invalid { .. })), "{bad}");
        }
    }
}
