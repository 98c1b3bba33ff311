#[allow(dead_code)]
mod dump;

fn main() {}
