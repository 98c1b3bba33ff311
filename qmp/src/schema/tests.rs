//! Tests of the embedded schema: coverage of the command reference,
//! QEMU 2.8's argument-checking wording, and introspection shape.

use serde_json::{json, Map, Value};

use super::*;
use crate::error::{ErrorClass, QmpError};

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("test arguments must be an object, got {other}"),
    }
}

/// Check `arguments` for `command` and return the error message.
fn reject(command: &str, arguments: Value) -> String {
    let s = schema();
    let cmd = s.command(command).expect("command in schema");
    match s.check_arguments(cmd, &args(arguments)) {
        Ok(()) => panic!("{command}: arguments accepted"),
        Err(e) => {
            assert_eq!(e.class, ErrorClass::GenericError);
            e.desc
        }
    }
}

fn accept(command: &str, arguments: Value) {
    let s = schema();
    let cmd = s.command(command).expect("command in schema");
    if let Err(e) = s.check_arguments(cmd, &args(arguments)) {
        panic!("{command}: rejected: {e}");
    }
}

/// The command reference, looked up beside the repository first.
fn spec_text() -> Option<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        root.join("../shared/spec/qmp-commands.txt"),
        std::path::PathBuf::from("/work/shared/spec/qmp-commands.txt"),
    ];
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
}

#[test]
fn every_command_of_the_reference_is_in_the_schema() {
    let Some(text) = spec_text() else {
        println!("note: qmp-commands.txt not found; command coverage not checked");
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut names = Vec::new();
    // Headings: a name underlined with dashes ("@name" in a few places).
    for pair in lines.windows(2) {
        let head = pair[0].trim().trim_start_matches('@');
        let is_rule = !pair[1].is_empty() && pair[1].chars().all(|c| c == '-');
        let is_name = !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if is_rule && is_name {
            names.push(head.to_string());
        }
    }
    // Table entries: `.name = "command",`.
    for line in &lines {
        if let Some(rest) = line.trim().strip_prefix(".name") {
            if let Some(name) = rest.split('"').nth(1) {
                names.push(name.to_string());
            }
        }
    }
    assert!(names.len() > 140, "reference parsed badly: {names:?}");
    let s = schema();
    let missing: Vec<&String> = names.iter().filter(|n| s.command(n).is_none()).collect();
    assert!(
        missing.is_empty(),
        "commands missing from schema: {missing:?}"
    );
}

#[test]
fn schema_has_qemu_command_and_event_counts() {
    let s = schema();
    assert_eq!(s.commands().count(), 145);
    assert_eq!(s.events().count(), 37);
}

#[test]
fn command_accessors_describe_query_name() {
    let s = schema();
    let cmd = s.command("query-name").unwrap();
    assert_eq!(cmd.name(), "query-name");
    assert!(!cmd.has_args());
    assert_eq!(s.type_name(cmd.returns().unwrap()), "NameInfo");
    assert!(cmd.gen() && cmd.success_response() && !cmd.boxed());
}

#[test]
fn boxed_and_nogen_flags_match_qemu() {
    let s = schema();
    assert!(s.command("drive-backup").unwrap().boxed());
    assert!(s.command("block_set_io_throttle").unwrap().boxed());
    for name in ["device_add", "netdev_add", "query-qmp-schema"] {
        assert!(!s.command(name).unwrap().gen(), "{name}");
    }
}

#[test]
fn members_flatten_base_first() {
    let s = schema();
    let id = s.lookup_type("BlockdevOptionsGenericCOWFormat").unwrap();
    let names: Vec<&str> = s.members(id).iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["file", "backing"]);
}

// Argument checking, QEMU 2.8 wording (qmp-input-visitor.c and
// qapi-visit-core.c at the reference commit).

#[test]
fn valid_arguments_are_accepted() {
    accept("eject", json!({"device": "ide1-cd0", "force": true}));
    accept("stop", json!({}));
    accept("migrate_set_downtime", json!({"value": 1}));
    accept("migrate_set_downtime", json!({"value": 0.5}));
    accept(
        "qom-set",
        json!({"path": "/machine", "property": "p", "value": [1, {"a": null}]}),
    );
}

#[test]
fn missing_string_member_reads_as_wrong_type() {
    assert_eq!(
        reject("eject", json!({})),
        "Invalid parameter type for 'device', expected: string"
    );
}

#[test]
fn first_member_in_schema_order_is_reported_first() {
    assert_eq!(
        reject("eject", json!({"force": "yes"})),
        "Invalid parameter type for 'device', expected: string"
    );
}

#[test]
fn wrong_scalar_types_name_qemu_type_words() {
    assert_eq!(
        reject("eject", json!({"device": "d", "force": "yes"})),
        "Invalid parameter type for 'force', expected: boolean"
    );
    assert_eq!(
        reject("block_resize", json!({"device": "d", "size": 1.5})),
        "Invalid parameter type for 'size', expected: integer"
    );
    assert_eq!(
        reject("migrate_set_downtime", json!({"value": "1"})),
        "Invalid parameter type for 'value', expected: number"
    );
    assert_eq!(
        reject("eject", json!({"device": 5})),
        "Invalid parameter type for 'device', expected: string"
    );
}

#[test]
fn integer_beyond_int64_is_not_an_integer() {
    // QEMU's parser turns such a literal into a float.
    assert_eq!(
        reject("block_resize", json!({"device": "d", "size": u64::MAX})),
        "Invalid parameter type for 'size', expected: integer"
    );
}

#[test]
fn unexpected_member_is_reported() {
    assert_eq!(
        reject("stop", json!({"now": true})),
        "QMP input object member 'now' is unexpected"
    );
    assert_eq!(
        reject("eject", json!({"device": "d", "bogus": 1})),
        "QMP input object member 'bogus' is unexpected"
    );
}

#[test]
fn bad_enum_value_names_the_value() {
    assert_eq!(
        reject(
            "drive-backup",
            json!({"device": "d", "target": "t", "sync": "most"})
        ),
        "Invalid parameter 'most'"
    );
    assert_eq!(
        reject(
            "drive-backup",
            json!({"device": "d", "target": "t", "sync": 1})
        ),
        "Invalid parameter type for 'sync', expected: string"
    );
}

#[test]
fn out_of_range_integers_name_the_c_type() {
    let base = json!({"device": "d", "target": "t", "sync": "full"});
    let with = |g: Value| {
        let mut a = base.clone();
        a["granularity"] = g;
        a
    };
    assert_eq!(
        reject("blockdev-mirror", with(json!(-1))),
        "Parameter 'granularity' expects uint32_t"
    );
    assert_eq!(
        reject("blockdev-mirror", with(json!(1u64 << 32))),
        "Parameter 'granularity' expects uint32_t"
    );
    accept("blockdev-mirror", with(json!(u32::MAX)));
}

#[test]
fn nested_members_are_named_by_their_own_name() {
    // blockdev-add's options is a flat union; a wrong member deep inside
    // is named without any path.
    assert_eq!(
        reject(
            "blockdev-add",
            json!({"options": {"driver": "qcow2", "node-name": "n", "file": "f", "lazy-refcounts": 1}})
        ),
        "Invalid parameter type for 'lazy-refcounts', expected: boolean"
    );
    assert_eq!(
        reject("blockdev-add", json!({"options": {}})),
        "Invalid parameter type for 'driver', expected: string"
    );
    assert_eq!(
        reject("blockdev-add", json!({"options": "x"})),
        "Invalid parameter type for 'options', expected: QDict"
    );
}

#[test]
fn flat_union_branch_members_are_checked_and_extras_rejected() {
    accept(
        "blockdev-add",
        json!({"options": {"driver": "file", "node-name": "a", "filename": "/tmp/x"}}),
    );
    assert_eq!(
        reject(
            "blockdev-add",
            json!({"options": {"driver": "file", "node-name": "a"}})
        ),
        "Invalid parameter type for 'filename', expected: string"
    );
    assert_eq!(
        reject(
            "blockdev-add",
            json!({"options": {"driver": "file", "filename": "/x", "size": 1}})
        ),
        "QMP input object member 'size' is unexpected"
    );
    assert_eq!(
        reject("blockdev-add", json!({"options": {"driver": "floppy"}})),
        "Invalid parameter 'floppy'"
    );
}

#[test]
fn alternate_accepts_each_branch_and_names_itself_otherwise() {
    accept(
        "blockdev-add",
        json!({"options": {"driver": "raw", "file": "node0"}}),
    );
    accept(
        "blockdev-add",
        json!({"options": {"driver": "raw", "file": {"driver": "file", "filename": "/x"}}}),
    );
    assert_eq!(
        reject(
            "blockdev-add",
            json!({"options": {"driver": "raw", "file": 5}})
        ),
        "Invalid parameter type for 'file', expected: BlockdevRef"
    );
    assert_eq!(
        reject("blockdev-add", json!({"options": {"driver": "raw"}})),
        "Parameter 'file' is missing"
    );
}

#[test]
fn list_elements_are_named_null() {
    assert_eq!(
        reject(
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "a"}, 5]})
        ),
        "Invalid parameter type for 'null', expected: QDict"
    );
    assert_eq!(
        reject("send-key", json!({"keys": {"type": "qcode"}})),
        "Invalid parameter type for 'keys', expected: list"
    );
}

#[test]
fn simple_union_members_are_type_and_data() {
    accept(
        "send-key",
        json!({"keys": [{"type": "number", "data": 30}, {"type": "qcode", "data": "ctrl"}]}),
    );
    assert_eq!(
        reject(
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "nokey"}]})
        ),
        "Invalid parameter 'nokey'"
    );
    assert_eq!(
        reject(
            "send-key",
            json!({"keys": [{"type": "number", "data": "1"}]})
        ),
        "Invalid parameter type for 'data', expected: integer"
    );
}

#[test]
fn missing_any_member_is_reported_missing() {
    assert_eq!(
        reject("qom-set", json!({"path": "/", "property": "p"})),
        "Parameter 'value' is missing"
    );
}

#[test]
fn nogen_commands_leave_checking_to_the_handler() {
    accept(
        "device_add",
        json!({"driver": "e1000", "bus": "pci.0", "mac": "x"}),
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let s = schema();
    // ImageInfo nests itself through backing-image.
    let mut v = json!({"filename": "f", "format": "raw", "virtual-size": 1});
    for _ in 0..2000 {
        let mut outer = args(json!({"filename": "f", "format": "raw", "virtual-size": 1}));
        outer.insert("backing-image".to_string(), v);
        v = Value::Object(outer);
    }
    let ty = TypeRef::Named(s.lookup_type("ImageInfo").unwrap());
    let e: QmpError = s.value(None, &ty, Some(&v), 0).unwrap_err();
    assert!(e.desc.contains("nested too deeply"), "{}", e.desc);
}

// Events and return values.

#[test]
fn event_data_is_checked_against_schema() {
    let s = schema();
    assert_eq!(s.check_event_data("STOP", &Value::Null), Ok(()));
    assert_eq!(
        s.check_event_data(
            "BLOCK_JOB_COMPLETED",
            &json!({"type": "stream", "device": "d", "len": 10, "offset": 10, "speed": 0})
        ),
        Ok(())
    );
    assert_eq!(
        s.check_event_data("BLOCK_JOB_COMPLETED", &json!({"type": "stream"})),
        Err("Invalid parameter type for 'device', expected: string".to_string())
    );
    assert!(s.check_event_data("NO_SUCH_EVENT", &Value::Null).is_err());
    assert!(s.check_event_data("STOP", &json!({"x": 1})).is_err());
}

#[test]
fn return_values_are_checked_against_schema() {
    let s = schema();
    let name = s.command("query-name").unwrap();
    assert_eq!(s.check_return_value(name, &json!({})), Ok(()));
    assert!(s.check_return_value(name, &json!({"name": 1})).is_err());
    let stop = s.command("stop").unwrap();
    assert_eq!(s.check_return_value(stop, &json!({})), Ok(()));
}

// Introspection (QEMU's qapi-introspect.py output shape).

fn introspect_all() -> Vec<Value> {
    match schema().introspect(&|_| true, &|_| true) {
        Value::Array(v) => v,
        other => panic!("not an array: {other}"),
    }
}

fn entry<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

#[test]
fn introspection_lists_every_entity_once() {
    // QEMU 2.8 reports 612 entries for its full schema.
    let list = introspect_all();
    assert_eq!(list.len(), 612);
    let mut names: Vec<&str> = list.iter().filter_map(|e| e["name"].as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 612);
}

#[test]
fn introspection_of_query_name_masks_types() {
    let list = introspect_all();
    let cmd = entry(&list, "query-name");
    assert_eq!(cmd["meta-type"], "command");
    let arg = entry(&list, cmd["arg-type"].as_str().unwrap());
    assert_eq!(
        *arg,
        json!({"name": arg["name"], "meta-type": "object", "members": []})
    );
    let ret = entry(&list, cmd["ret-type"].as_str().unwrap());
    assert!(ret["name"].as_str().unwrap().parse::<u32>().is_ok());
    assert_eq!(
        ret["members"],
        json!([{"name": "name", "type": "str", "default": null}])
    );
}

#[test]
fn introspection_commands_and_events_come_first_sorted() {
    let list = introspect_all();
    assert_eq!(list[0]["name"], "ACPI_DEVICE_OST");
    let heads: Vec<&str> = list
        .iter()
        .take_while(|e| e["meta-type"] == "command" || e["meta-type"] == "event")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(heads.len(), 145 + 37);
    assert!(heads.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn introspection_of_enum_lists_values() {
    let list = introspect_all();
    let status = entry(&list, "query-status");
    let info = entry(&list, status["ret-type"].as_str().unwrap());
    let members = info["members"].as_array().unwrap();
    let status_member = members.iter().find(|m| m["name"] == "status").unwrap();
    let run_state = entry(&list, status_member["type"].as_str().unwrap());
    assert_eq!(run_state["meta-type"], "enum");
    let values = run_state["values"].as_array().unwrap();
    assert_eq!(values[0], "debug");
    assert!(values.contains(&json!("running")));
    assert_eq!(values.len(), 15);
}

#[test]
fn introspection_folds_integer_arrays_into_int_list() {
    let list = introspect_all();
    let arr = entry(&list, "[int]");
    assert_eq!(
        *arr,
        json!({"name": "[int]", "meta-type": "array", "element-type": "int"})
    );
    assert_eq!(
        *entry(&list, "int"),
        json!({"name": "int", "meta-type": "builtin", "json-type": "int"})
    );
    // No other integer builtin appears.
    assert!(list
        .iter()
        .all(|e| e["name"] != "uint16" && e["name"] != "size"));
}

#[test]
fn introspection_of_flat_union_has_tag_and_variants() {
    let list = introspect_all();
    let add = entry(&list, "blockdev-add");
    let arg = entry(&list, add["arg-type"].as_str().unwrap());
    let options = &arg["members"][0];
    assert_eq!(options["name"], "options");
    let union = entry(&list, options["type"].as_str().unwrap());
    assert_eq!(union["tag"], "driver");
    assert_eq!(union["variants"][0]["case"], "archipelago");
    assert_eq!(union["members"][0]["name"], "driver");
}

#[test]
fn introspection_covers_only_what_the_caller_implements() {
    let v = schema().introspect(&|c| c == "query-name", &|_| false);
    let list = v.as_array().unwrap();
    // query-name, its empty argument object, NameInfo and str.
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["name"], "query-name");
    assert_eq!(list[0]["arg-type"], "0");
    assert_eq!(list[0]["ret-type"], "1");
}

#[test]
fn introspection_members_use_qemu_dictionary_order() {
    let v = schema().introspect(&|c| c == "query-name", &|_| false);
    let keys: Vec<&String> = v[0].as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["arg-type", "meta-type", "name", "ret-type"]);
    let order =
        crate::request::qdict_iteration_order(&["arg-type", "meta-type", "name", "ret-type"]);
    let expected: Vec<&str> = order
        .into_iter()
        .map(|i| ["arg-type", "meta-type", "name", "ret-type"][i])
        .collect();
    assert_eq!(keys, expected);
}
