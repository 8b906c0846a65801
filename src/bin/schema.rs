//! Prints the JSON Schema of the plugin configuration, generated from the Rust types that parse
//! it (`make schema` writes it to `docs/config.schema.json`; a test checks that file is current).

fn main() {
    println!("{}", tollgate::config::schema_json());
}
