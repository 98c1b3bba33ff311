//! Runs tiny firmware under KVM with a recording exit handler.

mod common;

use common::{assemble, kvm_missing, start};

#[test]
fn firmware_prints_hello_on_com1_and_writes_debug_exit() {
    if let Some(why) = kvm_missing() {
        println!("not run: {why}");
        return;
    }
    let bios = assemble("hello");
    let m = start(&bios, 16, 1, None, |_, _| {});
    let (serial, exit) = m.until_port(0x501, 0x3f8, 30);
    assert_eq!(serial, b"hello\n");
    assert_eq!(exit, vec![0x21]);
}
