//! Unit tests of `template.rs`.

use super::*;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn variables_with_and_without_spaces_are_replaced() {
    let out = render_template(
        "name: {{ name }}\nmesh: {{mesh}}\n",
        &vars(&[("name", "redis-1"), ("mesh", "default")]),
    )
    .unwrap();
    assert_eq!(out, "name: redis-1\nmesh: default\n");
}

#[test]
fn dotted_keys_are_plain_names() {
    let out =
        render_template("port: {{ ports.inbound }}", &vars(&[("ports.inbound", "9000")])).unwrap();
    assert_eq!(out, "port: 9000");
}

#[test]
fn triple_braces_and_ampersand_insert_the_value_unescaped() {
    let v = vars(&[("x", "<a&b>")]);
    assert_eq!(render_template("{{{ x }}} {{& x}} {{x}}", &v).unwrap(), "<a&b> <a&b> <a&b>");
}

#[test]
fn comments_disappear() {
    assert_eq!(render_template("a{{! note }}b", &HashMap::new()).unwrap(), "ab");
}

#[test]
fn a_missing_variable_is_named_with_its_line() {
    let err = render_template("type: Mesh\nname: {{ meshName }}\n", &HashMap::new()).unwrap_err();
    assert_eq!(err, TemplateError::MissingVariable { name: "meshName".into(), line: 2 });
    assert!(err.to_string().contains("meshName=VALUE (kumactl apply -v"), "{err}");
}

#[test]
fn text_without_variables_is_unchanged() {
    let text = "type: Mesh\nname: default\nsingle: { a: b }\n";
    assert_eq!(render_template(text, &HashMap::new()).unwrap(), text);
}

#[test]
fn malformed_tags_are_errors() {
    assert_eq!(
        render_template("a\n{{ x", &vars(&[("x", "1")])),
        Err(TemplateError::Unterminated { line: 2 })
    );
    assert_eq!(render_template("{{ }}", &HashMap::new()), Err(TemplateError::EmptyTag { line: 1 }));
    assert!(matches!(
        render_template("{{#list}}x{{/list}}", &HashMap::new()),
        Err(TemplateError::Unsupported { .. })
    ));
    assert!(matches!(
        render_template("{{ a b }}", &HashMap::new()),
        Err(TemplateError::Unsupported { .. })
    ));
}

#[test]
fn values_are_not_rendered_again() {
    let out = render_template("{{ a }}", &vars(&[("a", "{{ b }}")])).unwrap();
    assert_eq!(out, "{{ b }}");
}
