//! What the block layer prints on the process's stdout outside a command's
//! own output (blkdebug's "Suspended"/"Resuming" lines, reports of requests
//! that finish later), in the order it happens. A caller can capture it
//! instead, to put it in order with its own output.

use std::cell::RefCell;
use std::io::Write;

thread_local! {
    static CAPTURES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Prints `text`: into the innermost capture, else on stdout at once.
pub fn print(text: &str) {
    if text.is_empty() {
        return;
    }
    let captured = CAPTURES.with(|c| match c.borrow_mut().last_mut() {
        Some(buf) => {
            buf.push_str(text);
            true
        }
        None => false,
    });
    if !captured {
        let mut so = std::io::stdout();
        let _ = so.write_all(text.as_bytes());
        let _ = so.flush();
    }
}

/// Drops its capture also when the code inside panics.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURES.with(|c| c.borrow_mut().pop());
    }
}

/// Runs `f`, returning its result and what it printed.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
    CAPTURES.with(|c| c.borrow_mut().push(String::new()));
    let guard = CaptureGuard;
    let r = f();
    let text = CAPTURES.with(|c| c.borrow_mut().last_mut().map(std::mem::take));
    drop(guard);
    (r, text.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_nest_and_keep_order() {
        let ((), outer) = capture(|| {
            print("a");
            let ((), inner) = capture(|| print("b"));
            print(&inner);
            print("c");
        });
        assert_eq!(outer, "abc");
    }
}
