//! Mustache-style variables in applied files: `{{ key }}`, `{{key}}` and `{{{ key }}}` are
//! replaced by the value given with `-v key=value`; `{{! comment }}` disappears. Values are
//! inserted as written (no HTML escaping: these are YAML files). A dotted key such as `a.b` is a
//! plain name. Sections and partials are not supported and are reported, not ignored.

use std::collections::HashMap;

/// Why a template could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "variable {name:?} is used on line {line} but not given; pass it as {name}=VALUE (kumactl apply -v, kuma-dp --dataplane-var)"
    )]
    MissingVariable { name: String, line: usize },
    #[error("unterminated {{{{ on line {line}: close it with }}}}")]
    Unterminated { line: usize },
    #[error("empty {{{{ }}}} on line {line}: put a variable name inside")]
    EmptyTag { line: usize },
    #[error(
        "mustache tag {{{{{tag}}}}} on line {line} is not supported: only {{{{ variable }}}} is"
    )]
    Unsupported { tag: String, line: usize },
}

/// Replaces every `{{ key }}` in `text` by its value in `vars`.
pub fn render_template(
    text: &str,
    vars: &HashMap<String, String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let line_of = |rest: &str| text[..text.len() - rest.len()].matches('\n').count() + 1;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let line = line_of(&rest[start..]);
        let after = &rest[start + 2..];
        // `{{{ key }}}` is mustache's unescaped form; we never escape, so it is the same.
        let (inner, consumed) = if let Some(body) = after.strip_prefix('{') {
            let end = body.find("}}}").ok_or(TemplateError::Unterminated { line })?;
            (&body[..end], 1 + end + 3)
        } else {
            let end = after.find("}}").ok_or(TemplateError::Unterminated { line })?;
            (&after[..end], end + 2)
        };
        rest = &after[consumed..];
        let tag = inner.trim();
        if tag.starts_with('!') {
            continue;
        }
        let name = tag.strip_prefix('&').map(str::trim).unwrap_or(tag);
        if name.is_empty() {
            return Err(TemplateError::EmptyTag { line });
        }
        if name.starts_with(['#', '^', '/', '>', '=', '{']) || name.contains(char::is_whitespace) {
            return Err(TemplateError::Unsupported { tag: inner.to_string(), line });
        }
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => return Err(TemplateError::MissingVariable { name: name.to_string(), line }),
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
