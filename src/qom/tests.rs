//! Tree and path-resolution tests.

use serde_json::json;

use super::*;

/// `/machine` (none-machine) with its containers, `/objects`,
/// `/chardevs/mon0`.
fn tree() -> Qom {
    let mut q = Qom::new();
    let m = q
        .add_child(ROOT, "machine", "none-machine", Box::new(Stored::default()))
        .unwrap();
    q.add_container(m, "unattached");
    q.add_container(m, "peripheral");
    q.add_container(m, "peripheral-anon");
    q.add_container(ROOT, "objects");
    let c = q.add_container(ROOT, "chardevs");
    q.add_child(c, "mon0", "chardev-socket", Box::new(Stored::default()))
        .unwrap();
    q
}

#[test]
fn absolute_paths_resolve_and_ignore_empty_components() {
    let q = tree();
    let u = q.resolve_path("/machine/unattached");
    assert!(matches!(u, Resolved::Found(_)));
    assert_eq!(q.resolve_path("//machine//unattached/"), u);
    assert_eq!(q.resolve_path("/"), Resolved::Found(ROOT));
    assert_eq!(q.resolve_path("/machine/nope"), Resolved::NotFound);
}

#[test]
fn partial_paths_resolve_when_unique() {
    let q = tree();
    let Resolved::Found(i) = q.resolve_path("mon0") else {
        panic!("mon0 not found");
    };
    assert_eq!(q.canonical_path(i), "/chardevs/mon0");
    let Resolved::Found(i) = q.resolve_path("machine/peripheral") else {
        panic!("partial two-part path not found");
    };
    assert_eq!(q.canonical_path(i), "/machine/peripheral");
    assert_eq!(q.resolve_path("nothing"), Resolved::NotFound);
}

#[test]
fn partial_paths_matching_twice_are_ambiguous() {
    let mut q = tree();
    let objs = q.child(ROOT, "objects").unwrap();
    q.add_container(objs, "peripheral");
    assert_eq!(q.resolve_path("peripheral"), Resolved::Ambiguous);
    // Without the flag (qom-get) QEMU finds nothing either.
    assert_eq!(q.lookup("peripheral"), None);
    assert_eq!(q.resolve_path(""), Resolved::Ambiguous);
}

#[test]
fn links_are_followed_in_absolute_paths_only() {
    let mut q = tree();
    let m = q.machine().unwrap();
    let mon = q.resolve("/chardevs/mon0").unwrap();
    q.add_link(m, "serial0", "chardev", Some(mon), true)
        .unwrap();
    assert_eq!(q.resolve("/machine/serial0"), Some(mon));
    assert_eq!(q.get_prop(m, "serial0").unwrap(), json!("/chardevs/mon0"));
    let bad = json!("/machine/unattached");
    assert_eq!(
        q.set_prop(m, "serial0", &Input::Json(&bad))
            .unwrap_err()
            .msg(),
        "Invalid parameter type for 'serial0', expected: chardev"
    );
    let gone = json!("/nowhere");
    assert_eq!(
        q.set_prop(m, "serial0", &Input::Json(&gone)).unwrap_err(),
        QomError::device_not_found("/nowhere")
    );
    let empty = json!("");
    q.set_prop(m, "serial0", &Input::Json(&empty)).unwrap();
    assert_eq!(q.get_prop(m, "serial0").unwrap(), json!(""));
}

#[test]
fn qom_list_reports_children_and_typed_properties() {
    let q = tree();
    let list = q.list_props(ROOT);
    assert!(list.contains(&("type".into(), "string".into())));
    assert!(list.contains(&("machine".into(), "child<none-machine>".into())));
    assert!(list.contains(&("chardevs".into(), "child<container>".into())));
    let m = q.machine().unwrap();
    let list = q.list_props(m);
    assert!(list.contains(&("accel".into(), "string".into())));
    assert!(list.contains(&("kernel-irqchip".into(), "OnOffSplit".into())));
}

#[test]
fn get_and_set_follow_access_and_types() {
    let mut q = tree();
    let m = q.machine().unwrap();
    assert_eq!(q.get_prop(m, "type").unwrap(), json!("none-machine"));
    assert_eq!(q.get_prop(m, "mem-merge").unwrap(), json!(true));
    assert_eq!(
        q.get_prop(m, "unattached").unwrap(),
        json!("/machine/unattached")
    );
    assert_eq!(
        q.get_prop(m, "kernel-irqchip").unwrap_err().msg(),
        "Insufficient permission to perform this operation"
    );
    assert_eq!(
        q.get_prop(m, "nope").unwrap_err().msg(),
        "Property '.nope' not found"
    );
    let v = json!("x");
    assert_eq!(
        q.set_prop(m, "type", &Input::Json(&v)).unwrap_err().msg(),
        "Insufficient permission to perform this operation"
    );
    assert_eq!(
        q.set_prop(m, "usb", &Input::Json(&v)).unwrap_err().msg(),
        "Invalid parameter type for 'usb', expected: boolean"
    );
    q.set_prop(m, "usb", &Input::Str("on")).unwrap();
    assert_eq!(q.get_prop(m, "usb").unwrap(), json!(true));
}

#[test]
fn duplicate_children_are_refused_with_the_parent_type() {
    let mut q = tree();
    let e = q
        .add_child(ROOT, "machine", "container", Box::new(Stored::default()))
        .unwrap_err();
    assert_eq!(
        e.msg(),
        "attempt to add duplicate property 'machine' to object (type 'container')"
    );
    let e = q
        .add_child(ROOT, "type", "container", Box::new(Stored::default()))
        .unwrap_err();
    assert!(e.msg().contains("duplicate property 'type'"));
}

#[test]
fn removing_a_subtree_clears_links_into_it() {
    let mut q = tree();
    let m = q.machine().unwrap();
    let mon = q.resolve("/chardevs/mon0").unwrap();
    q.add_link(m, "serial0", "chardev", Some(mon), false)
        .unwrap();
    let c = q.child(ROOT, "chardevs").unwrap();
    q.remove(c);
    assert_eq!(q.resolve("/chardevs/mon0"), None);
    assert_eq!(q.get_prop(m, "serial0").unwrap(), json!(""));
}
