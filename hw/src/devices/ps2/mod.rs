//! PS/2 input devices behind the i8042: the keyboard's key-to-scancode
//! encoding and the mouse's command set and movement packets. The i8042
//! owns the byte queues; these modules only decide which bytes go in them.

pub mod keyboard;
pub mod keymap;
pub mod mouse;
