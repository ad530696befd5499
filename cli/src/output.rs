//! Printing API objects as YAML or JSON, exactly as the API returned them.

use std::io::Write;

use serde_json::Value;

use crate::args::OutputFormat;
use crate::error::CliError;

/// Prints `value` as YAML or JSON; `Table` is handled by each command and never reaches here.
pub(crate) fn print_value(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &Value,
) -> Result<(), CliError> {
    match format {
        OutputFormat::Yaml => print_yaml(out, value),
        OutputFormat::Json | OutputFormat::Table => print_json(out, value),
    }
}

/// YAML, key order as given.
pub(crate) fn print_yaml(out: &mut dyn Write, value: &Value) -> Result<(), CliError> {
    let text = serde_yaml::to_string(value).map_err(|e| CliError::UnexpectedAnswer {
        what: "a resource".to_string(),
        reason: format!("it cannot be printed as YAML: {e}"),
    })?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Pretty JSON with a final newline.
pub(crate) fn print_json(out: &mut dyn Write, value: &Value) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_keeps_the_apis_key_order() {
        let mut out = Vec::new();
        let value =
            json!({"type": "Mesh", "name": "default", "creationTime": "2026-01-01T00:00:00Z"});
        print_yaml(&mut out, &value).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "type: Mesh\nname: default\ncreationTime: 2026-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn json_is_pretty_and_ends_with_a_newline() {
        let mut out = Vec::new();
        print_json(&mut out, &json!({"total": 0, "items": [], "next": null})).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"total\": 0,\n  \"items\": [],\n  \"next\": null\n}\n"
        );
    }
}
