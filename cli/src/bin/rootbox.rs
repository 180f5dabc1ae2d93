fn main() {
    println!("rootbox {}", rootbox_core::VERSION);
}
