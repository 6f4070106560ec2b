//! Prints the README's table of what each mutation invalidates, as the code applies it:
//! `cargo run -p letip-service --example invalidation_table`.

#![allow(clippy::print_stdout)]

fn main() {
    print!("{}", letip_service::invalidation::table());
}
