use super::*;

#[test]
fn embedded_schema_parses() {
    let s = schema();
    assert!(s.command("query-name").is_some());
}
